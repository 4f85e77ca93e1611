//! Ingest jobs: persisted, bounded in concurrency, cancellable, retryable.
//!
//! Everything lives in ingest's [`Workspace`], never in the store. Each job
//! is a JSON file, `{workspace}/jobs/{id}.json`, replaced atomically (write,
//! fsync, rename) on every change of state, so a crash loses at most the
//! progress figures. Uploaded sources live in `{workspace}/uploads/` until
//! their job is done; ffmpeg logs in `{workspace}/logs/{id}.log`.
//!
//! On start, jobs that were running when the previous process died are
//! queued again (up to [`MAX_ATTEMPTS`] attempts, then failed), half-written
//! uploads are deleted and staging debris of dead processes is removed.
//! Only a semaphore's worth of jobs (`concurrency`, default 1) run at once;
//! the rest wait, queued, in submission order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kinema_core::{AccessPolicy, VideoId};
use kinema_store::Store;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{self, IngestConfig, IngestRequest, Progress, Stage};
use crate::subtitles::{SidecarSubtitle, SkippedSubtitle};
use crate::workspace::Workspace;
use crate::{MediaError, slug, supervise};

/// A job interrupted by crashes this many times is failed, not retried
/// again: the source itself may be what brings the process down.
pub const MAX_ATTEMPTS: u32 = 3;
/// Lines of the ffmpeg log returned with a job.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {0} does not exist")]
    NotFound(String),
    #[error("job {id} is {state}; only {allowed} jobs can be {action}")]
    WrongState {
        id: String,
        state: JobState,
        allowed: &'static str,
        action: &'static str,
    },
    #[error("video {0} already exists or is being ingested; choose another id")]
    VideoIdTaken(VideoId),
    #[error(
        "the source of job {0} is gone (it was rejected as bad input, or expired after the job \
         failed); upload it again"
    )]
    SourceGone(String),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(
        "disk full (No space left on device) while writing {}; free space on the library's \
         disk (or move the library to a larger one) and try again",
        path.display()
    )]
    StorageFull { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl JobError {
    /// True when the library's disk is full (HTTP 507): retrying succeeds
    /// once there is room.
    pub fn is_storage_full(&self) -> bool {
        match self {
            JobError::StorageFull { .. } => true,
            JobError::Media(error) => error.is_storage_full(),
            _ => false,
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> JobError {
    if source.kind() == std::io::ErrorKind::StorageFull {
        return JobError::StorageFull {
            path: path.to_path_buf(),
        };
    }
    JobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A job id: time-ordered, unique within a library.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("j{nanos:x}{:x}{count:x}", std::process::id()))
    }

    /// Accepts only ids of the form this module generates, so an id from a
    /// URL can be joined to a directory safely.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() <= 64
            && text.starts_with('j')
            && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
            && text.len() > 1;
        valid.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

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
    fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        })
    }
}

/// What is persisted of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct JobRecord {
    id: JobId,
    video_id: VideoId,
    title: String,
    /// Absent in job files written before policies existed: public.
    #[serde(default)]
    access: AccessPolicy,
    state: JobState,
    source: PathBuf,
    /// True for uploads: the source file is ours to delete.
    owned_source: bool,
    created_at_unix: u64,
    updated_at_unix: u64,
    attempts: u32,
    error: Option<String>,
    /// Sidecar subtitle files (uploads are owned like the source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subtitles: Vec<SidecarSubtitle>,
    /// Bitmap subtitle tracks the last successful run could not publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skipped_subtitles: Vec<SkippedSubtitle>,
    /// Where a failed or cancelled job stopped (its stage and percent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stopped_at: Option<Progress>,
}

/// What callers (the API, the CLI) see of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub video_id: VideoId,
    pub title: String,
    pub state: JobState,
    pub progress: Progress,
    pub attempts: u32,
    pub created_at_unix: u64,
    pub updated_at_unix: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bitmap subtitle tracks of the source that were not published (only
    /// text subtitles become WebVTT), with their language.
    pub skipped_subtitles: Vec<SkippedSubtitle>,
    /// The last lines of ffmpeg's log (only from [`IngestService::job`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// A new job.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub source: PathBuf,
    /// True when the file is an upload the service may delete when done.
    pub owned_source: bool,
    pub video_id: Option<VideoId>,
    pub title: Option<String>,
    pub access: AccessPolicy,
    /// Sidecar subtitle files, owned (moved and deleted) like the source
    /// when `owned_source` is true.
    pub subtitles: Vec<SidecarSubtitle>,
}

struct Entry {
    record: JobRecord,
    progress: Progress,
    cancel: CancellationToken,
}

struct Inner {
    store: Arc<dyn Store>,
    workspace: Workspace,
    config: IngestConfig,
    jobs: Mutex<BTreeMap<JobId, Entry>>,
    permits: Arc<Semaphore>,
    /// Serialises job-file writes, so the file always ends with the latest
    /// state (each write takes the record as it is when the lock is held).
    persist_lock: tokio::sync::Mutex<()>,
}

/// The ingest job service of one library.
#[derive(Clone)]
pub struct IngestService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService")
            .field("workspace", &self.inner.workspace.root())
            .finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl IngestService {
    /// Opens the job records of `workspace`, recovers jobs a previous
    /// process left running, cleans debris, and starts queued jobs.
    pub async fn start(
        store: Arc<dyn Store>,
        workspace: Workspace,
        config: IngestConfig,
    ) -> Result<Self, JobError> {
        config.validate()?;
        let service = Self {
            inner: Arc::new(Inner {
                store,
                permits: Arc::new(Semaphore::new(config.concurrency)),
                workspace,
                config,
                jobs: Mutex::new(BTreeMap::new()),
                persist_lock: tokio::sync::Mutex::new(()),
            }),
        };
        let records = {
            let workspace = service.inner.workspace.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<JobRecord>, JobError> {
                for removed in workspace
                    .clean_debris()
                    .map_err(|e| io_error(workspace.root(), e))?
                {
                    tracing::info!(path = %removed.display(), "removed debris of an interrupted ingest");
                }
                load_records(&workspace.jobs())
            })
            .await
            .map_err(|join| io_error(Path::new("jobs"), std::io::Error::other(join)))??
        };
        let mut to_run = Vec::new();
        let mut to_persist = Vec::new();
        {
            let mut jobs = service.inner.jobs.lock().expect("job table lock");
            for mut record in records {
                if record.state == JobState::Running {
                    if record.attempts >= MAX_ATTEMPTS {
                        record.state = JobState::Failed;
                        record.error = Some(format!(
                            "interrupted {} times (the process stopped while it ran); not retried again",
                            record.attempts
                        ));
                    } else {
                        tracing::info!(job = %record.id, "requeueing a job interrupted by a restart");
                        record.state = JobState::Queued;
                    }
                    record.updated_at_unix = now_unix();
                    to_persist.push(record.id.clone());
                }
                if record.state == JobState::Queued {
                    to_run.push(record.id.clone());
                }
                let progress = progress_for(&record);
                jobs.insert(
                    record.id.clone(),
                    Entry {
                        record,
                        progress,
                        cancel: CancellationToken::new(),
                    },
                );
            }
        }
        for id in to_persist {
            service.persist(&id).await?;
        }
        for id in to_run {
            service.spawn_runner(id);
        }
        service.spawn_upload_expiry();
        Ok(service)
    }

    /// Deletes, every so often for as long as the service lives, the
    /// uploads of jobs that failed or were cancelled more than
    /// `failed_upload_ttl` ago: nobody retried them, and each may be
    /// gigabytes.
    fn spawn_upload_expiry(&self) {
        let ttl = self.inner.config.failed_upload_ttl;
        let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600));
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = inner.upgrade() else { return };
                let cutoff = now_unix().saturating_sub(ttl.as_secs());
                let expired: Vec<PathBuf> = {
                    let jobs = inner.jobs.lock().expect("job table lock");
                    jobs.values()
                        .map(|entry| &entry.record)
                        .filter(|record| {
                            record.owned_source
                                && matches!(record.state, JobState::Failed | JobState::Cancelled)
                                && record.updated_at_unix <= cutoff
                        })
                        .flat_map(|record| {
                            let sidecars = record.subtitles.iter().map(|s| s.path.clone());
                            std::iter::once(record.source.clone()).chain(sidecars)
                        })
                        .collect()
                };
                for source in expired {
                    match tokio::fs::remove_file(&source).await {
                        Ok(()) => tracing::info!(
                            path = %source.display(),
                            "deleted the upload of a job that failed or was cancelled \
                             longer ago than failed_upload_ttl"
                        ),
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => tracing::warn!(path = %source.display(), %error,
                            "could not delete an expired upload"),
                    }
                }
            }
        });
    }

    /// An error as the job record and the API show it: the server's
    /// directories are named for what they are, not by their paths.
    fn public_message(&self, error: &dyn std::fmt::Display) -> String {
        let mut text = error.to_string();
        let workspace = &self.inner.workspace;
        let places = [
            (workspace.staging(), "<staging>"),
            (workspace.root().to_path_buf(), "<ingest workspace>"),
        ];
        for (dir, name) in places {
            if dir.components().count() > 1 {
                text = text.replace(&dir.display().to_string(), name);
            }
        }
        text
    }

    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// A new, empty file for an upload to be streamed into; hand it to
    /// [`submit`](Self::submit) with `owned_source: true` once complete.
    /// Files left by interrupted uploads are removed on the next start.
    pub async fn create_upload_file(&self) -> Result<(PathBuf, tokio::fs::File), JobError> {
        let path = self
            .inner
            .workspace
            .uploads()
            .join(format!("partial-{}", JobId::generate()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        Ok((path, file))
    }

    /// Queues a job. Fails at once when ffmpeg is missing or the video id is
    /// taken, so the caller gets the error instead of a doomed job.
    pub async fn submit(&self, request: SubmitRequest) -> Result<JobView, JobError> {
        let result = self.submit_inner(&request).await;
        if result.is_err() && request.owned_source {
            let _ = tokio::fs::remove_file(&request.source).await;
            for sidecar in &request.subtitles {
                let _ = tokio::fs::remove_file(&sidecar.path).await;
            }
        }
        result
    }

    async fn submit_inner(&self, request: &SubmitRequest) -> Result<JobView, JobError> {
        if let Some(title) = &request.title {
            pipeline::check_title(title)?;
        }
        supervise::check_tool(&self.inner.config.ffmpeg).await?;
        supervise::check_tool(&self.inner.config.ffprobe).await?;
        let id = JobId::generate();
        let video_id = match &request.video_id {
            Some(video_id) => {
                if self.is_published(video_id).await? {
                    return Err(JobError::VideoIdTaken(video_id.clone()));
                }
                video_id.clone()
            }
            None => self.free_slug(request.title.as_deref(), &id).await?,
        };
        let source = if request.owned_source {
            // Uploads are kept under the job's id until the job is done.
            let path = self.inner.workspace.uploads().join(id.as_str());
            tokio::fs::rename(&request.source, &path)
                .await
                .map_err(|e| io_error(&path, e))?;
            path
        } else {
            std::path::absolute(&request.source).map_err(|e| io_error(&request.source, e))?
        };
        let mut subtitles = Vec::new();
        for (k, sidecar) in request.subtitles.iter().enumerate() {
            let path = if request.owned_source {
                let path = self.inner.workspace.uploads().join(format!("{id}-sub{k}"));
                if let Err(error) = tokio::fs::rename(&sidecar.path, &path).await {
                    remove_kept_upload(request, &source, &subtitles).await;
                    return Err(io_error(&path, error));
                }
                path
            } else {
                std::path::absolute(&sidecar.path).map_err(|e| io_error(&sidecar.path, e))?
            };
            subtitles.push(SidecarSubtitle {
                path,
                ..sidecar.clone()
            });
        }
        let kept_subtitles = subtitles.clone();
        let now = now_unix();
        let kept_source = source.clone();
        let record = JobRecord {
            id: id.clone(),
            title: request
                .title
                .clone()
                .filter(|title| !title.trim().is_empty())
                .unwrap_or_else(|| video_id.to_string()),
            video_id: video_id.clone(),
            access: request.access,
            state: JobState::Queued,
            source,
            owned_source: request.owned_source,
            created_at_unix: now,
            updated_at_unix: now,
            attempts: 0,
            error: None,
            subtitles,
            skipped_subtitles: Vec::new(),
            stopped_at: None,
        };
        let taken = {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let taken = jobs
                .values()
                .any(|entry| entry.record.video_id == video_id && entry.record.state.is_active());
            if !taken {
                jobs.insert(
                    id.clone(),
                    Entry {
                        record,
                        progress: Progress::at(Stage::Queued, 0.0),
                        cancel: CancellationToken::new(),
                    },
                );
            }
            taken
        };
        if taken {
            remove_kept_upload(request, &kept_source, &kept_subtitles).await;
            return Err(JobError::VideoIdTaken(video_id));
        }
        if let Err(error) = self.persist(&id).await {
            // A job that cannot be recorded (the disk is full, say) is not
            // accepted: left in the table it would stay queued with no
            // runner, holding its video id, and its upload would outlive it.
            self.inner.jobs.lock().expect("job table lock").remove(&id);
            remove_kept_upload(request, &kept_source, &kept_subtitles).await;
            return Err(error);
        }
        self.spawn_runner(id.clone());
        self.view(&id)
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    async fn is_published(&self, video_id: &VideoId) -> Result<bool, JobError> {
        match self.inner.store.manifest(video_id).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(JobError::Media(error.into())),
        }
    }

    /// A readable id for an upload that names none: the slug of its title
    /// (`slug::candidates`), numbered when taken by a published video or an
    /// active job; the job's own id (`v…`) when every numbered one is.
    async fn free_slug(&self, title: Option<&str>, job: &JobId) -> Result<VideoId, JobError> {
        let invalid =
            |error: kinema_core::PathError| JobError::Media(MediaError::Output(error.to_string()));
        for candidate in slug::candidates(title.unwrap_or("")) {
            let candidate = VideoId::new(candidate).map_err(invalid)?;
            let held_by_job = self
                .inner
                .jobs
                .lock()
                .expect("job table lock")
                .values()
                .any(|entry| entry.record.video_id == candidate && entry.record.state.is_active());
            if !held_by_job && !self.is_published(&candidate).await? {
                return Ok(candidate);
            }
        }
        VideoId::new(format!("v{}", &job.as_str()[1..])).map_err(invalid)
    }

    /// Every job, newest first.
    pub fn jobs(&self) -> Vec<JobView> {
        let jobs = self.inner.jobs.lock().expect("job table lock");
        jobs.values().rev().map(view_of).collect()
    }

    /// One job, with the tail of its ffmpeg log.
    pub async fn job(&self, id: &JobId) -> Result<JobView, JobError> {
        let mut view = self
            .view(id)
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        let log = self.log_path(id);
        if let Ok(text) = tokio::fs::read_to_string(&log).await {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            view.log_tail = lines[start..].iter().map(|line| line.to_string()).collect();
        }
        Ok(view)
    }

    fn view(&self, id: &JobId) -> Option<JobView> {
        let jobs = self.inner.jobs.lock().expect("job table lock");
        jobs.get(id).map(view_of)
    }

    /// Cancels a queued or running job; a running ffmpeg is killed.
    pub async fn cancel(&self, id: &JobId) -> Result<JobView, JobError> {
        let persist_now = {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let entry = jobs
                .get_mut(id)
                .ok_or_else(|| JobError::NotFound(id.to_string()))?;
            match entry.record.state {
                JobState::Queued => {
                    entry.record.state = JobState::Cancelled;
                    entry.record.updated_at_unix = now_unix();
                    entry.record.stopped_at = Some(stopped(entry.progress));
                    entry.progress = progress_for(&entry.record);
                    entry.cancel.cancel();
                    true
                }
                // The runner sees the token, kills ffmpeg, cleans staging
                // and records the state itself.
                JobState::Running => {
                    entry.cancel.cancel();
                    false
                }
                state => {
                    return Err(JobError::WrongState {
                        id: id.to_string(),
                        state,
                        allowed: "queued or running",
                        action: "cancelled",
                    });
                }
            }
        };
        if persist_now {
            self.persist(id).await?;
        }
        self.view(id)
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Queues a failed or cancelled job again.
    pub async fn retry(&self, id: &JobId) -> Result<JobView, JobError> {
        {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let entry = jobs
                .get_mut(id)
                .ok_or_else(|| JobError::NotFound(id.to_string()))?;
            if !matches!(entry.record.state, JobState::Failed | JobState::Cancelled) {
                return Err(JobError::WrongState {
                    id: id.to_string(),
                    state: entry.record.state,
                    allowed: "failed or cancelled",
                    action: "retried",
                });
            }
            if !entry.record.source.exists() {
                return Err(JobError::SourceGone(id.to_string()));
            }
            entry.record.state = JobState::Queued;
            entry.record.error = None;
            entry.record.stopped_at = None;
            entry.record.attempts = 0;
            entry.record.updated_at_unix = now_unix();
            entry.progress = Progress::at(Stage::Queued, 0.0);
            entry.cancel = CancellationToken::new();
        }
        self.persist(id).await?;
        self.spawn_runner(id.clone());
        self.view(id)
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Resolves when the job has reached done, failed or cancelled.
    pub async fn wait(&self, id: &JobId) -> Result<JobView, JobError> {
        loop {
            let view = self
                .view(id)
                .ok_or_else(|| JobError::NotFound(id.to_string()))?;
            if !view.state.is_active() {
                return Ok(view);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self, id: &JobId) -> PathBuf {
        self.inner.workspace.logs().join(format!("{id}.log"))
    }

    fn spawn_runner(&self, id: JobId) {
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(error) = service.run(&id).await {
                tracing::error!(job = %id, error = %error, "ingest job bookkeeping failed");
            }
        });
    }

    async fn run(&self, id: &JobId) -> Result<(), JobError> {
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return Ok(());
        };
        let (request, cancel, owned_source) = {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let Some(entry) = jobs.get_mut(id) else {
                return Ok(());
            };
            // Cancelled while it waited for a permit.
            if entry.record.state != JobState::Queued {
                return Ok(());
            }
            entry.record.state = JobState::Running;
            entry.record.attempts += 1;
            entry.record.updated_at_unix = now_unix();
            entry.progress = Progress::at(Stage::Probing, 0.0);
            (
                IngestRequest {
                    source: entry.record.source.clone(),
                    id: entry.record.video_id.clone(),
                    title: entry.record.title.clone(),
                    access: entry.record.access,
                    log_file: Some(self.log_path(id)),
                    subtitles: entry.record.subtitles.clone(),
                },
                entry.cancel.clone(),
                entry.record.owned_source,
            )
        };
        if let Err(error) = self.persist(id).await {
            // A job that cannot record that it started (the disk is full,
            // say) must not stay running with no runner: it fails, with the
            // reason, and can be retried once there is room.
            {
                let mut jobs = self.inner.jobs.lock().expect("job table lock");
                if let Some(entry) = jobs.get_mut(id) {
                    entry.record.state = JobState::Failed;
                    entry.record.error = Some(self.public_message(&error));
                    entry.record.updated_at_unix = now_unix();
                    entry.record.stopped_at = Some(stopped(entry.progress));
                    entry.progress = progress_for(&entry.record);
                }
            }
            tracing::warn!(job = %id, %error, "ingest job could not start");
            return self.persist(id).await;
        }
        let log_path = self.log_path(id);
        if let Ok(mut log) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
        {
            let _ = log
                .write_all(format!("--- attempt at {} ---\n", now_unix()).as_bytes())
                .await;
        }
        let staging = self.inner.workspace.staging_dir(id.as_str());
        let inner = self.inner.clone();
        let progress_id = id.clone();
        let on_progress = move |progress: Progress| {
            let mut jobs = inner.jobs.lock().expect("job table lock");
            if let Some(entry) = jobs.get_mut(&progress_id) {
                entry.progress = progress;
            }
        };
        let result = pipeline::ingest(
            self.inner.store.as_ref(),
            &staging,
            &self.inner.config,
            &request,
            &cancel,
            &on_progress,
        )
        .await;
        let delete_source = {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let Some(entry) = jobs.get_mut(id) else {
                return Ok(());
            };
            entry.record.updated_at_unix = now_unix();
            let delete_source = match &result {
                Ok(ingested) => {
                    entry.record.state = JobState::Done;
                    entry.record.error = None;
                    entry.record.skipped_subtitles = ingested.skipped_subtitles.clone();
                    true
                }
                Err(MediaError::Cancelled) => {
                    entry.record.state = JobState::Cancelled;
                    false
                }
                Err(error) => {
                    tracing::warn!(job = %id, error = %error, "ingest failed");
                    entry.record.state = JobState::Failed;
                    entry.record.error = Some(self.public_message(&error));
                    // A bad source cannot succeed on retry: free its space.
                    error.is_bad_source()
                }
            };
            entry.record.stopped_at =
                (entry.record.state != JobState::Done).then(|| stopped(entry.progress));
            entry.progress = progress_for(&entry.record);
            delete_source && owned_source
        };
        if delete_source {
            let _ = tokio::fs::remove_file(&request.source).await;
            for sidecar in &request.subtitles {
                let _ = tokio::fs::remove_file(&sidecar.path).await;
            }
        }
        self.persist(id).await
    }

    /// Writes the job's current record atomically.
    async fn persist(&self, id: &JobId) -> Result<(), JobError> {
        let _guard = self.inner.persist_lock.lock().await;
        let record = {
            let jobs = self.inner.jobs.lock().expect("job table lock");
            match jobs.get(id) {
                Some(entry) => entry.record.clone(),
                None => return Ok(()),
            }
        };
        let jobs_dir = self.inner.workspace.jobs();
        tokio::task::spawn_blocking(move || write_record(&jobs_dir, &record))
            .await
            .map_err(|join| io_error(Path::new("jobs"), std::io::Error::other(join)))?
    }
}

/// Removes an upload already moved to its job's name when the job is refused
/// after all ([`IngestService::submit`] removes it under its first name only),
/// with the sidecar subtitle files already moved.
async fn remove_kept_upload(request: &SubmitRequest, source: &Path, subtitles: &[SidecarSubtitle]) {
    if request.owned_source {
        let _ = tokio::fs::remove_file(source).await;
        for sidecar in subtitles {
            let _ = tokio::fs::remove_file(&sidecar.path).await;
        }
    }
}

/// The progress a job's record implies: done at 100%, a failed or
/// cancelled job where it stopped, anything else queued at 0%.
fn progress_for(record: &JobRecord) -> Progress {
    match (record.state, record.stopped_at) {
        (JobState::Done, _) => Progress::at(Stage::Done, 100.0),
        (JobState::Failed | JobState::Cancelled, Some(stopped_at)) => stopped_at,
        _ => Progress::at(Stage::Queued, 0.0),
    }
}

/// Where a job stopped: its stage and percent, with no speed or time left.
fn stopped(progress: Progress) -> Progress {
    Progress::at(progress.stage, progress.percent)
}

fn view_of(entry: &Entry) -> JobView {
    let record = &entry.record;
    JobView {
        id: record.id.clone(),
        video_id: record.video_id.clone(),
        title: record.title.clone(),
        state: record.state,
        progress: entry.progress,
        attempts: record.attempts,
        created_at_unix: record.created_at_unix,
        updated_at_unix: record.updated_at_unix,
        error: record.error.clone(),
        skipped_subtitles: record.skipped_subtitles.clone(),
        log_tail: Vec::new(),
    }
}

fn write_record(jobs_dir: &Path, record: &JobRecord) -> Result<(), JobError> {
    use std::io::Write;
    let path = jobs_dir.join(format!("{}.json", record.id));
    let tmp = jobs_dir.join(format!(".{}.json.tmp", record.id));
    let json = serde_json::to_vec_pretty(record).map_err(|e| io_error(&path, e.into()))?;
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(&json)?;
        file.sync_all()
    });
    if let Err(error) = written {
        // A write cut short (a full disk) must not keep the space it took.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(&tmp, error));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    std::fs::File::open(jobs_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(jobs_dir, e))
}

fn load_records(jobs_dir: &Path) -> Result<Vec<JobRecord>, JobError> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(jobs_dir).map_err(|e| io_error(jobs_dir, e))? {
        let entry = entry.map_err(|e| io_error(jobs_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // A temporary file of a write the crash interrupted.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
        match serde_json::from_slice::<JobRecord>(&bytes) {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::warn!(file = %entry.path().display(), %error, "skipping an unreadable job record");
            }
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

/// Reads a job file's bytes as loading does and writes the record back as
/// [`write_record`] does; `None` for a file loading skips. For the fuzz
/// targets (`fuzz/` at the workspace root), which cannot see [`JobRecord`].
#[doc(hidden)]
pub fn reserialize_job_record(bytes: &[u8]) -> Option<Vec<u8>> {
    let record = serde_json::from_slice::<JobRecord>(bytes).ok()?;
    Some(serde_json::to_vec_pretty(&record).expect("a job record serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_unique_and_parse_back() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert_ne!(a, b);
        assert_eq!(JobId::parse(a.as_str()), Some(a));
        for bad in ["", "j", "x123", "j12/..", "j12g", "../j1"] {
            assert_eq!(JobId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn records_are_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let record = JobRecord {
            id: JobId::generate(),
            video_id: VideoId::new("clip").unwrap(),
            title: "Clip".into(),
            access: AccessPolicy::Signed,
            state: JobState::Running,
            source: "/tmp/x.mp4".into(),
            owned_source: false,
            created_at_unix: 1,
            updated_at_unix: 2,
            attempts: 1,
            error: None,
            subtitles: vec![SidecarSubtitle {
                path: "/tmp/x.fr.srt".into(),
                language: "fr".into(),
                forced: true,
                hearing_impaired: false,
            }],
            skipped_subtitles: vec![SkippedSubtitle {
                language: "de".into(),
                codec: "hdmv_pgs_subtitle".into(),
            }],
            stopped_at: Some(Progress::at(Stage::Transcoding, 42.0)),
        };
        write_record(dir.path(), &record).unwrap();
        std::fs::write(dir.path().join(".junk.json.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join("broken.json"), b"{").unwrap();
        assert_eq!(load_records(dir.path()).unwrap(), vec![record]);
        assert!(!dir.path().join(".junk.json.tmp").exists());
    }
}
