//! The embedded backend: the single-node default, with no database.
//!
//! Jobs live in a table in memory behind one lock, so every operation is
//! atomic by construction. With a directory, each job is also a JSON file,
//! `{dir}/{job id}.json`, replaced atomically (temporary file, fsync,
//! rename, directory fsync) after every change, and read back on open:
//! a restarted server has every job, and a lease that was held when it
//! stopped simply expires and is claimed again. Lease times come from the
//! system clock (persisted as Unix milliseconds, so they survive restarts).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::{self, TaskFigures};
use files::{load, write};

mod files;
use crate::{
    Claim, ClaimRequest, Heartbeat, JobState, JobStatus, LeaseToken, MAX_LIST, NewJob, Queue,
    QueueConfig, QueueError, TaskState, TaskStatus,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    token: LeaseToken,
    expires_at_ms: u64,
    length_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskRecord {
    name: String,
    kind: String,
    payload: serde_json::Value,
    depends_on: Vec<String>,
    weight_seconds: f64,
    state: TaskState,
    attempts: u32,
    progress: f64,
    worker: Option<String>,
    error: Option<String>,
    result: Option<serde_json::Value>,
    lease: Option<LeaseRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    id: String,
    /// Enqueue order: claims take the oldest job's tasks first.
    seq: u64,
    source_key: String,
    settings: serde_json::Value,
    /// `Queued` for every active job; running is derived from its tasks.
    state: JobState,
    error: Option<String>,
    publish_token: Option<LeaseToken>,
    created_at_unix: u64,
    updated_at_unix: u64,
    tasks: Vec<TaskRecord>,
}

#[derive(Debug, Default)]
struct Table {
    jobs: BTreeMap<String, JobRecord>,
    /// Job ids in enqueue order.
    order: BTreeMap<u64, String>,
    /// Every token still answered for: held leases, and those of a
    /// cancelled job's tasks (their heartbeat answers "cancelled").
    tokens: HashMap<LeaseToken, (String, usize)>,
    next_seq: u64,
}

/// Jobs in memory, and in JSON files when opened on a directory.
#[derive(Debug)]
pub struct EmbeddedQueue {
    dir: Option<PathBuf>,
    config: QueueConfig,
    table: Mutex<Table>,
    /// Serialises file writes, so a job's file always ends with its latest
    /// state (each write takes the record as it is once the lock is held).
    persist_lock: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn backend(path: &Path, error: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(format!("{}: {error}", path.display()))
}

impl EmbeddedQueue {
    /// A queue that lives only as long as the process (tests, one-shot runs).
    pub fn in_memory(config: QueueConfig) -> Self {
        Self {
            dir: None,
            config,
            table: Mutex::new(Table::default()),
            persist_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens (creating it) the directory of job files and reads every job
    /// back; temporary files of interrupted writes are removed and
    /// unreadable files skipped with a warning.
    pub async fn open(dir: &Path, config: QueueConfig) -> Result<Self, QueueError> {
        let dir = dir.to_path_buf();
        let records = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || load(&dir))
                .await
                .map_err(|join| QueueError::Backend(join.to_string()))??
        };
        let mut table = Table::default();
        for record in records {
            for (index, task) in record.tasks.iter().enumerate() {
                if let Some(lease) = &task.lease {
                    table
                        .tokens
                        .insert(lease.token.clone(), (record.id.clone(), index));
                }
            }
            table.next_seq = table.next_seq.max(record.seq + 1);
            table.order.insert(record.seq, record.id.clone());
            table.jobs.insert(record.id.clone(), record);
        }
        Ok(Self {
            dir: Some(dir),
            config,
            table: Mutex::new(table),
            persist_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("queue table lock")
    }

    /// Writes the job's current record (or nothing, in memory).
    async fn persist(&self, job_id: &str) -> Result<(), QueueError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let _guard = self.persist_lock.lock().await;
        let Some(record) = self.lock().jobs.get(job_id).cloned() else {
            return Ok(());
        };
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || write(&dir, &record))
            .await
            .map_err(|join| QueueError::Backend(join.to_string()))?
    }

    /// The job and task a token names while its lease is held; the job's
    /// cancellation first, since a cancelled task keeps its token.
    fn held<'t>(
        table: &'t mut Table,
        token: &LeaseToken,
        now: u64,
    ) -> Result<(&'t mut JobRecord, usize), QueueError> {
        let (job_id, index) = table
            .tokens
            .get(token)
            .cloned()
            .ok_or(QueueError::LeaseLost)?;
        let job = table.jobs.get_mut(&job_id).ok_or(QueueError::LeaseLost)?;
        if job.state == JobState::Cancelled {
            return Err(QueueError::Cancelled(job_id));
        }
        let task = &job.tasks[index];
        let holds = task.state == TaskState::Running
            && task
                .lease
                .as_ref()
                .is_some_and(|lease| &lease.token == token && lease.expires_at_ms >= now);
        if !holds {
            return Err(QueueError::LeaseLost);
        }
        Ok((job, index))
    }
}

fn figures(job: &JobRecord) -> Vec<TaskFigures> {
    job.tasks
        .iter()
        .map(|task| TaskFigures {
            state: task.state,
            weight_seconds: task.weight_seconds,
            progress: task.progress,
            attempts: task.attempts,
        })
        .collect()
}

fn status(job: &JobRecord) -> JobStatus {
    let figures = figures(job);
    JobStatus {
        id: job.id.clone(),
        source_key: job.source_key.clone(),
        settings: job.settings.clone(),
        state: model::shown_state(job.state, &figures),
        progress: model::job_progress(&figures),
        attempts: model::job_attempts(&figures),
        error: job.error.clone(),
        created_at_unix: job.created_at_unix,
        updated_at_unix: job.updated_at_unix,
        tasks: job
            .tasks
            .iter()
            .map(|task| TaskStatus {
                name: task.name.clone(),
                kind: task.kind.clone(),
                payload: task.payload.clone(),
                depends_on: task.depends_on.clone(),
                weight_seconds: task.weight_seconds,
                state: task.state,
                attempts: task.attempts,
                progress: task.progress,
                worker: task.worker.clone(),
                error: task.error.clone(),
                result: task.result.clone(),
            })
            .collect(),
    }
}

/// Ends a job failed because of `reason`, cancelling its other unfinished
/// tasks and forgetting their tokens.
fn fail_job(
    table_tokens: &mut HashMap<LeaseToken, (String, usize)>,
    job: &mut JobRecord,
    reason: String,
) {
    for task in &mut job.tasks {
        if matches!(task.state, TaskState::Queued | TaskState::Running) {
            task.state = TaskState::Cancelled;
        }
        if let Some(lease) = task.lease.take() {
            table_tokens.remove(&lease.token);
        }
    }
    job.state = JobState::Failed;
    job.error = Some(reason);
    job.publish_token = None;
}

#[async_trait::async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobStatus, QueueError> {
        model::validate_job(&job)?;
        let now = now_ms() / 1000;
        let view = {
            let mut table = self.lock();
            if table.jobs.contains_key(&job.id) {
                return Err(QueueError::AlreadyExists(job.id));
            }
            let seq = table.next_seq;
            table.next_seq += 1;
            let record = JobRecord {
                id: job.id.clone(),
                seq,
                source_key: job.source_key,
                settings: job.settings,
                state: JobState::Queued,
                error: None,
                publish_token: None,
                created_at_unix: now,
                updated_at_unix: now,
                tasks: job
                    .tasks
                    .into_iter()
                    .map(|task| TaskRecord {
                        name: task.name,
                        kind: task.kind,
                        payload: task.payload,
                        depends_on: task.depends_on,
                        weight_seconds: task.weight_seconds,
                        state: TaskState::Queued,
                        attempts: 0,
                        progress: 0.0,
                        worker: None,
                        error: None,
                        result: None,
                        lease: None,
                    })
                    .collect(),
            };
            let view = status(&record);
            table.order.insert(seq, job.id.clone());
            table.jobs.insert(job.id.clone(), record);
            view
        };
        if let Err(error) = self.persist(&job.id).await {
            // A job that cannot be recorded is not accepted.
            let mut table = self.lock();
            if let Some(record) = table.jobs.remove(&job.id) {
                table.order.remove(&record.seq);
            }
            return Err(error);
        }
        Ok(view)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Option<Claim>, QueueError> {
        model::validate_claim(request)?;
        let now = now_ms();
        let mut touched = Vec::new();
        let claim = {
            let mut table = self.lock();
            let table = &mut *table;
            let mut claim = None;
            let order: Vec<String> = table.order.values().cloned().collect();
            'jobs: for job_id in order {
                let Some(job) = table.jobs.get_mut(&job_id) else {
                    continue;
                };
                if !job.state.is_active() {
                    continue;
                }
                for index in 0..job.tasks.len() {
                    let task = &job.tasks[index];
                    let expired = task.state == TaskState::Running
                        && task.lease.as_ref().is_none_or(|l| l.expires_at_ms < now);
                    if !(task.state == TaskState::Queued || expired) {
                        continue;
                    }
                    if !request.kinds.is_empty() && !request.kinds.contains(&task.kind) {
                        continue;
                    }
                    let ready = task.depends_on.iter().all(|dependency| {
                        job.tasks
                            .iter()
                            .any(|t| &t.name == dependency && t.state == TaskState::Done)
                    });
                    if !ready {
                        continue;
                    }
                    if expired && task.attempts >= self.config.max_attempts {
                        let reason = format!(
                            "task {} lost its worker {} times (its lease expired); not retried again",
                            task.name, task.attempts
                        );
                        job.tasks[index].state = TaskState::Failed;
                        job.tasks[index].error = Some(reason.clone());
                        fail_job(&mut table.tokens, job, reason);
                        job.updated_at_unix = now / 1000;
                        touched.push(job_id.clone());
                        continue 'jobs;
                    }
                    let token = LeaseToken::generate();
                    let length_ms = request.lease.as_millis() as u64;
                    let task = &mut job.tasks[index];
                    if let Some(old) = task.lease.take() {
                        table.tokens.remove(&old.token);
                    }
                    task.state = TaskState::Running;
                    task.attempts += 1;
                    task.progress = 0.0;
                    task.worker = Some(request.worker.clone());
                    task.lease = Some(LeaseRecord {
                        token: token.clone(),
                        expires_at_ms: now + length_ms,
                        length_ms,
                    });
                    job.updated_at_unix = now / 1000;
                    table.tokens.insert(token.clone(), (job_id.clone(), index));
                    claim = Some(Claim {
                        token,
                        job_id: job_id.clone(),
                        source_key: job.source_key.clone(),
                        settings: job.settings.clone(),
                        task: task.name.clone(),
                        kind: task.kind.clone(),
                        payload: task.payload.clone(),
                        attempt: task.attempts,
                        lease: request.lease,
                    });
                    touched.push(job_id.clone());
                    break 'jobs;
                }
            }
            claim
        };
        for job_id in touched {
            self.persist(&job_id).await?;
        }
        Ok(claim)
    }

    async fn heartbeat(&self, token: &LeaseToken, progress: f64) -> Result<Heartbeat, QueueError> {
        let progress = model::check_progress(progress)?;
        let now = now_ms();
        let job_id = {
            let mut table = self.lock();
            let (job, index) = match Self::held(&mut table, token, now) {
                Err(QueueError::Cancelled(_)) => return Ok(Heartbeat::Cancelled),
                other => other?,
            };
            let task = &mut job.tasks[index];
            task.progress = progress;
            if let Some(lease) = &mut task.lease {
                lease.expires_at_ms = now + lease.length_ms;
            }
            job.updated_at_unix = now / 1000;
            job.id.clone()
        };
        self.persist(&job_id).await?;
        Ok(Heartbeat::Continue)
    }

    async fn begin_publish(&self, token: &LeaseToken) -> Result<(), QueueError> {
        let job_id = {
            let mut table = self.lock();
            let (job, _) = Self::held(&mut table, token, now_ms())?;
            match &job.publish_token {
                Some(holder) if holder != token => {
                    return Err(QueueError::PublishTaken(job.id.clone()));
                }
                _ => job.publish_token = Some(token.clone()),
            }
            job.id.clone()
        };
        self.persist(&job_id).await
    }

    async fn complete(
        &self,
        token: &LeaseToken,
        result: serde_json::Value,
    ) -> Result<JobStatus, QueueError> {
        model::check_result(&result)?;
        let now = now_ms();
        let (job_id, view) = {
            let mut table = self.lock();
            let (job, index) = Self::held(&mut table, token, now)?;
            let task = &mut job.tasks[index];
            task.state = TaskState::Done;
            task.progress = 1.0;
            task.error = None;
            task.result = Some(result);
            task.lease = None;
            if job.tasks.iter().all(|task| task.state == TaskState::Done) {
                job.state = JobState::Done;
                job.error = None;
            }
            job.updated_at_unix = now / 1000;
            let answer = (job.id.clone(), status(job));
            table.tokens.remove(token);
            answer
        };
        self.persist(&job_id).await?;
        Ok(view)
    }

    async fn fail(
        &self,
        token: &LeaseToken,
        reason: &str,
        retryable: bool,
    ) -> Result<JobStatus, QueueError> {
        let reason = model::truncate_reason(reason);
        let now = now_ms();
        let max_attempts = self.config.max_attempts;
        let (job_id, view) = {
            let mut table = self.lock();
            let table = &mut *table;
            let (job_id, index) = {
                let (job, index) = Self::held(table, token, now)?;
                (job.id.clone(), index)
            };
            table.tokens.remove(token);
            let job = table.jobs.get_mut(&job_id).expect("the job held");
            let task = &mut job.tasks[index];
            task.lease = None;
            task.error = Some(reason.clone());
            if retryable && task.attempts < max_attempts {
                task.state = TaskState::Queued;
            } else {
                task.state = TaskState::Failed;
                fail_job(&mut table.tokens, job, reason);
            }
            job.updated_at_unix = now / 1000;
            (job_id, status(job))
        };
        self.persist(&job_id).await?;
        Ok(view)
    }

    async fn cancel(&self, job_id: &str) -> Result<JobStatus, QueueError> {
        let view = {
            let mut table = self.lock();
            let job = table
                .jobs
                .get_mut(job_id)
                .ok_or_else(|| QueueError::NotFound(job_id.to_string()))?;
            if !job.state.is_active() {
                return Err(QueueError::WrongState {
                    id: job_id.to_string(),
                    state: job.state,
                    allowed: "queued or running",
                    action: "cancelled",
                });
            }
            // Running tasks keep their token, so their next heartbeat
            // answers "cancelled" instead of "lease lost".
            for task in &mut job.tasks {
                if matches!(task.state, TaskState::Queued | TaskState::Running) {
                    task.state = TaskState::Cancelled;
                }
            }
            job.state = JobState::Cancelled;
            job.updated_at_unix = now_ms() / 1000;
            status(job)
        };
        self.persist(job_id).await?;
        Ok(view)
    }

    async fn retry(&self, job_id: &str) -> Result<JobStatus, QueueError> {
        let view = {
            let mut table = self.lock();
            let table = &mut *table;
            let job = table
                .jobs
                .get_mut(job_id)
                .ok_or_else(|| QueueError::NotFound(job_id.to_string()))?;
            if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
                return Err(QueueError::WrongState {
                    id: job_id.to_string(),
                    state: job.state,
                    allowed: "failed or cancelled",
                    action: "retried",
                });
            }
            for task in &mut job.tasks {
                if let Some(lease) = task.lease.take() {
                    table.tokens.remove(&lease.token);
                }
                if task.state != TaskState::Done {
                    task.state = TaskState::Queued;
                    task.attempts = 0;
                    task.progress = 0.0;
                    task.worker = None;
                    task.error = None;
                    task.result = None;
                }
            }
            job.state = JobState::Queued;
            job.error = None;
            job.publish_token = None;
            job.updated_at_unix = now_ms() / 1000;
            status(job)
        };
        self.persist(job_id).await?;
        Ok(view)
    }

    async fn job(&self, job_id: &str) -> Result<JobStatus, QueueError> {
        self.lock()
            .jobs
            .get(job_id)
            .map(status)
            .ok_or_else(|| QueueError::NotFound(job_id.to_string()))
    }

    async fn jobs(&self, limit: usize) -> Result<Vec<JobStatus>, QueueError> {
        let table = self.lock();
        Ok(table
            .order
            .values()
            .rev()
            .take(limit.min(MAX_LIST))
            .filter_map(|id| table.jobs.get(id).map(status))
            .collect())
    }
}
