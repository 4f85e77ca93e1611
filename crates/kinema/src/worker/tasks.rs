//! Running one claimed task: the kinds a worker knows, each moving objects
//! between the object store and the task's scratch directory around a
//! kinema-media entry point (which runs ffmpeg, with the same safety options
//! for sources as every ingest).
//!
//! `encode` (a whole video, today's ingest): the job's source is read from
//! `jobs/{job}/source` into scratch, encoded by [`kinema_media::ingest`],
//! and published to the library through the [`FencedStore`], whose publish
//! the server allows once per job.
//!
//! A chunked job (`kinema_media::chunked`; its plan in the job's settings):
//! `chunk` (payload `{"index"}`) and `audio` read the source and write what
//! they made below `jobs/{job}/out/` (a retried task overwrites its own
//! keys), and `assemble`, which runs once every other task is done, reads
//! all of `out/` into one staging directory and publishes through the
//! [`FencedStore`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::{Future, StreamExt, TryStreamExt};

use kinema_core::{AccessPolicy, VideoId};
use kinema_media::chunked::{self, ChunkedPlan};
use kinema_media::{IngestConfig, IngestRequest, MediaError, Progress};
use kinema_store::Store;
use kinema_store::s3::JobObjects;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::client::{ClaimedTask, WorkerClient};
use super::fenced_store::FencedStore;
use super::sources::SourceCopies;

/// The kinds this worker runs.
pub const KINDS: [&str; 4] = ["encode", "chunk", "audio", "assemble"];
/// Where a chunked job's task outputs live, below the job's prefix.
const OUT: &str = "out";
/// Most files one task's output may hold (segments of a long chunk).
const MAX_OUTPUT_FILES: usize = 100_000;
/// Largest source a worker downloads, bytes (what `kinema serve` accepts).
const MAX_SOURCE_BYTES: u64 = kinema_origin::api::MAX_UPLOAD_BYTES;
/// Objects a task moves between the store and its scratch at once: the
/// segments are small, so one at a time waits on the round trips.
const TRANSFER_CONCURRENCY: usize = 8;

/// Why a task did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Stopped on purpose (the job was cancelled, the lease lost, or the
    /// worker is stopping): ffmpeg was killed and nothing was published.
    #[error("stopped")]
    Stopped,
    /// The source itself is at fault: retrying cannot succeed.
    #[error("{0}")]
    BadSource(String),
    #[error("{0}")]
    Failed(String),
}

impl TaskError {
    fn from_media(error: MediaError) -> Self {
        match error {
            MediaError::Cancelled => TaskError::Stopped,
            error if error.is_bad_source() => TaskError::BadSource(error.to_string()),
            error => TaskError::Failed(error.to_string()),
        }
    }
}

/// What a job's settings say of the video an `encode` task makes.
#[derive(Debug, Deserialize)]
struct EncodeSettings {
    video_id: VideoId,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    access: AccessPolicy,
}

/// Everything a task may use.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub store: Arc<dyn Store>,
    pub objects: JobObjects,
    pub client: WorkerClient,
    pub ingest: IngestConfig,
    pub sources: SourceCopies,
}

/// The name of a key below the job's prefix, refused when outside it.
fn job_object_name<'a>(task: &'a ClaimedTask, key: &'a str) -> Result<&'a str, TaskError> {
    key.strip_prefix(&task.objects.job_prefix)
        .filter(|name| kinema_store::s3::is_valid_job_name(name))
        .ok_or_else(|| {
            TaskError::Failed(format!(
                "the task's object {key:?} is not below its job's prefix {:?}",
                task.objects.job_prefix
            ))
        })
}

/// Runs `task` in `scratch` (an empty directory of its own), reporting
/// progress (0.0 to 1.0) into `progress`; returns the result to complete
/// the task with.
pub async fn run(
    context: &TaskContext,
    task: &ClaimedTask,
    scratch: &Path,
    progress: &Arc<Mutex<f64>>,
    cancel: &CancellationToken,
) -> Result<Value, TaskError> {
    match task.kind.as_str() {
        "encode" => encode(context, task, scratch, progress, cancel).await,
        "chunk" | "audio" => encode_part(context, task, scratch, progress, cancel).await,
        "assemble" => assemble(context, task, scratch, progress, cancel).await,
        other => Err(TaskError::Failed(format!(
            "this worker does not run tasks of kind {other:?}; it runs {}",
            KINDS.join(", ")
        ))),
    }
}

/// The job's source at `scratch/source`: the copy this worker kept from
/// an earlier task of the job if the object is unchanged, else downloaded.
async fn download_source(
    context: &TaskContext,
    task: &ClaimedTask,
    scratch: &Path,
    cancel: &CancellationToken,
) -> Result<PathBuf, TaskError> {
    tokio::select! {
        () = cancel.cancelled() => Err(TaskError::Stopped),
        source = fetch_source(context, task, scratch) => source,
    }
}

async fn fetch_source(
    context: &TaskContext,
    task: &ClaimedTask,
    scratch: &Path,
) -> Result<PathBuf, TaskError> {
    let name = job_object_name(task, &task.objects.source)?;
    let path = scratch.join("source");
    let gone = || {
        TaskError::BadSource(format!(
            "the job's source {} is gone from the object store; upload it again",
            task.objects.source
        ))
    };
    let cannot_read = |error| TaskError::Failed(format!("cannot read the job's source: {error}"));
    let started = Instant::now();
    let version = context
        .objects
        .version(&task.job_id, name)
        .await
        .map_err(cannot_read)?
        .ok_or_else(gone)?;
    if context
        .sources
        .link_to(&task.job_id, name, &version, &path)
        .await
    {
        tracing::info!(
            bytes = version.size,
            "source reused from this worker's previous task"
        );
        return Ok(path);
    }
    context
        .objects
        .get_to_file(&task.job_id, name, &path, MAX_SOURCE_BYTES)
        .await
        .map_err(cannot_read)?
        .ok_or_else(gone)?;
    tracing::info!(
        bytes = version.size,
        seconds = started.elapsed().as_secs_f64(),
        "source downloaded"
    );
    context
        .sources
        .keep(&task.job_id, name, version, &path)
        .await;
    Ok(path)
}

async fn encode(
    context: &TaskContext,
    task: &ClaimedTask,
    scratch: &Path,
    progress: &Arc<Mutex<f64>>,
    cancel: &CancellationToken,
) -> Result<Value, TaskError> {
    let settings: EncodeSettings = serde_json::from_value(task.settings.clone())
        .map_err(|error| TaskError::Failed(format!("the job's settings: {error}")))?;
    let source = download_source(context, task, scratch, cancel).await?;
    let store = FencedStore {
        inner: context.store.clone(),
        client: context.client.clone(),
        lease: task.lease_token.clone(),
    };
    let request = IngestRequest {
        source,
        title: settings
            .title
            .filter(|title| !title.trim().is_empty())
            .unwrap_or_else(|| settings.video_id.to_string()),
        id: settings.video_id,
        access: settings.access,
        log_file: Some(scratch.join("ffmpeg.log")),
        subtitles: Vec::new(),
    };
    let progress = progress.clone();
    let on_progress = move |reported: Progress| {
        *progress.lock().unwrap_or_else(PoisonError::into_inner) =
            (reported.percent / 100.0).clamp(0.0, 1.0);
    };
    let ingested = kinema_media::ingest(
        &store,
        &scratch.join("staging"),
        &context.ingest,
        &request,
        cancel,
        &on_progress,
    )
    .await
    .map_err(TaskError::from_media)?;
    Ok(json!({
        "video_id": ingested.manifest.id,
        "generation": ingested.manifest.generation,
        "skipped_subtitles": ingested.skipped_subtitles,
    }))
}

/// What a chunked job's settings hold beside the video's.
#[derive(Debug, Deserialize)]
struct ChunkedSettings {
    #[serde(flatten)]
    video: EncodeSettings,
    plan: ChunkedPlan,
}

fn chunked_settings(task: &ClaimedTask) -> Result<ChunkedSettings, TaskError> {
    serde_json::from_value(task.settings.clone())
        .map_err(|error| TaskError::Failed(format!("the job's chunked settings: {error}")))
}

/// `chunk` or `audio`: one part of the encode, its files uploaded below
/// `jobs/{job}/out/`.
async fn encode_part(
    context: &TaskContext,
    task: &ClaimedTask,
    scratch: &Path,
    progress: &Arc<Mutex<f64>>,
    cancel: &CancellationToken,
) -> Result<Value, TaskError> {
    let settings = chunked_settings(task)?;
    let plan = &settings.plan;
    let source = download_source(context, task, scratch, cancel).await?;
    let out = scratch.join(OUT);
    tokio::fs::create_dir_all(&out)
        .await
        .map_err(|error| TaskError::Failed(format!("cannot create {}: {error}", out.display())))?;
    let (expected, index) = if task.kind == "chunk" {
        let index = task.payload["index"]
            .as_u64()
            .and_then(|index| usize::try_from(index).ok())
            .ok_or_else(|| TaskError::Failed("a chunk task without an index".into()))?;
        (plan.chunk_media_seconds(index), Some(index))
    } else {
        (plan.source.duration_seconds, None)
    };
    let shared = progress.clone();
    let on_progress = move |seconds: f64| {
        let share = if expected > 0.0 {
            seconds / expected
        } else {
            0.0
        };
        // The upload after the encode is the last tenth.
        *shared.lock().unwrap_or_else(PoisonError::into_inner) = (share * 0.9).clamp(0.0, 0.9);
    };
    let started = Instant::now();
    let encoded = match index {
        Some(index) => {
            chunked::run_chunk(
                &context.ingest,
                plan,
                index,
                &source,
                &out,
                cancel,
                &on_progress,
            )
            .await
        }
        None => {
            chunked::run_audio(&context.ingest, plan, &source, &out, cancel, &on_progress).await
        }
    };
    encoded.map_err(TaskError::from_media)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "encoded");
    let files = upload_tree(context, task, &out, cancel).await?;
    Ok(json!({ "files": files }))
}

/// Uploads every file below `dir` to `jobs/{job}/out/{relative path}`.
async fn upload_tree(
    context: &TaskContext,
    task: &ClaimedTask,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<usize, TaskError> {
    let mut pending = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(current) = pending.pop() {
        let mut entries = tokio::fs::read_dir(&current).await.map_err(|error| {
            TaskError::Failed(format!("cannot list {}: {error}", current.display()))
        })?;
        while let Some(entry) = entries.next_entry().await.map_err(|error| {
            TaskError::Failed(format!("cannot list {}: {error}", current.display()))
        })? {
            let path = entry.path();
            if entry.file_type().await.is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else {
                files.push(path);
            }
            if files.len() > MAX_OUTPUT_FILES {
                return Err(TaskError::Failed(format!(
                    "the task made more than {MAX_OUTPUT_FILES} files"
                )));
            }
        }
    }
    let started = Instant::now();
    let uploads = files
        .iter()
        .map(|path| upload_output(context, task, dir, path, cancel))
        .collect();
    let bytes: u64 = transfer_all(uploads).await?.into_iter().sum();
    tracing::info!(
        files = files.len(),
        bytes,
        seconds = started.elapsed().as_secs_f64(),
        "outputs uploaded"
    );
    Ok(files.len())
}

/// Runs `transfers` [`TRANSFER_CONCURRENCY`] at a time; the first error
/// ends them all. (A `Vec`, not a lazy iterator: an iterator of these
/// futures trips the compiler's proof that the task's future is Send.)
async fn transfer_all<T>(
    transfers: Vec<impl Future<Output = Result<T, TaskError>>>,
) -> Result<Vec<T>, TaskError> {
    futures::stream::iter(transfers)
        .buffer_unordered(TRANSFER_CONCURRENCY)
        .try_collect()
        .await
}

/// Uploads `path`, a file below `dir`, to `jobs/{job}/out/{relative path}`.
async fn upload_output(
    context: &TaskContext,
    task: &ClaimedTask,
    dir: &Path,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<u64, TaskError> {
    if cancel.is_cancelled() {
        return Err(TaskError::Stopped);
    }
    let relative = path
        .strip_prefix(dir)
        .ok()
        .and_then(Path::to_str)
        .ok_or_else(|| TaskError::Failed(format!("{} has no UTF-8 name", path.display())))?;
    let name = format!("{OUT}/{relative}");
    context
        .objects
        .put_file(&task.job_id, &name, path)
        .await
        .map_err(|error| TaskError::Failed(format!("cannot upload {name}: {error}")))
}

/// Downloads the job's object `name`, which is `out/{relative}`, to
/// `staging/{relative}`.
async fn download_output(
    context: &TaskContext,
    task: &ClaimedTask,
    name: &str,
    relative: &str,
    staging: &Path,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    if cancel.is_cancelled() {
        return Err(TaskError::Stopped);
    }
    // Checked before any directory is made for it: a listed name must not
    // reach outside `staging` (no empty or dot-led parts).
    if !kinema_store::s3::is_valid_job_name(name) {
        return Err(TaskError::Failed(format!(
            "{name:?} is not a job object's name"
        )));
    }
    let path = staging.join(relative);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|error| {
            TaskError::Failed(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    context
        .objects
        .get_to_file(&task.job_id, name, &path, MAX_SOURCE_BYTES)
        .await
        .map_err(|error| TaskError::Failed(format!("cannot read {name}: {error}")))?
        .ok_or_else(|| TaskError::Failed(format!("{name} vanished")))?;
    Ok(())
}

/// `assemble`: every task's output into one staging directory, then the
/// whole ingest's packaging and the (fenced) publish.
async fn assemble(
    context: &TaskContext,
    task: &ClaimedTask,
    scratch: &Path,
    progress: &Arc<Mutex<f64>>,
    cancel: &CancellationToken,
) -> Result<Value, TaskError> {
    let settings = chunked_settings(task)?;
    let staging = scratch.join("staging");
    let objects =
        context.objects.list(&task.job_id).await.map_err(|error| {
            TaskError::Failed(format!("cannot list the job's objects: {error}"))
        })?;
    let prefix = format!("{OUT}/");
    let outputs: Vec<_> = objects
        .iter()
        .filter_map(|object| Some((object, object.name.strip_prefix(&prefix)?)))
        .collect();
    let started = Instant::now();
    let downloads = outputs
        .iter()
        .map(|(object, relative)| {
            download_output(context, task, &object.name, relative, &staging, cancel)
        })
        .collect();
    transfer_all(downloads).await?;
    tracing::info!(
        files = outputs.len(),
        bytes = outputs.iter().map(|(object, _)| object.size).sum::<u64>(),
        seconds = started.elapsed().as_secs_f64(),
        "outputs downloaded"
    );
    let store = FencedStore {
        inner: context.store.clone(),
        client: context.client.clone(),
        lease: task.lease_token.clone(),
    };
    let request = chunked::AssembleRequest {
        title: settings
            .video
            .title
            .filter(|title| !title.trim().is_empty())
            .unwrap_or_else(|| settings.video.video_id.to_string()),
        id: settings.video.video_id,
        access: settings.video.access,
    };
    let shared = progress.clone();
    let on_progress = move |reported: Progress| {
        *shared.lock().unwrap_or_else(PoisonError::into_inner) =
            (reported.percent / 100.0).clamp(0.0, 1.0);
    };
    let ingested = chunked::assemble(
        &store,
        &context.ingest,
        &settings.plan,
        &staging,
        &request,
        cancel,
        &on_progress,
    )
    .await
    .map_err(TaskError::from_media)?;
    Ok(json!({
        "video_id": ingested.manifest.id,
        "generation": ingested.manifest.generation,
    }))
}
