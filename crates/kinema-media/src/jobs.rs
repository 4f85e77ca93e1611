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
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kinema_core::{AccessPolicy, VideoId};
use kinema_store::Store;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{self, IngestConfig, Progress, Stage};
use crate::subtitles::{SidecarSubtitle, SkippedSubtitle};
use crate::workspace::Workspace;
use crate::{MediaError, slug, supervise};

mod record;
mod runner;

#[doc(hidden)]
pub use record::reserialize_job_record;
pub use record::{JobId, JobState};
use record::{JobRecord, load_records, progress_for, stopped};

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
