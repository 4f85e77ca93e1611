//! The server's half of distributed ingest, wired by `kinema serve` when
//! its library is in S3: uploads are streamed to the object store and
//! queued, and the worker protocol hands their tasks to `kinema worker`
//! processes. The queue is in PostgreSQL when `[queue] url` names one, else
//! kept in the ingest workspace (one JSON file per job); either way it
//! survives a restart.

use std::path::Path;

use anyhow::{Context, Result};
use kinema_origin::OriginParts;
use kinema_origin::remote_ingest::{Chunking, RemoteIngest};
use kinema_origin::worker_api::{JobObjectsLocation, WorkerApi};
use kinema_store::StoreConfig;

use crate::queue::QueueSettings;

/// `parts` taking workers for `library` (in S3), the queue's files under
/// `workspace_root`, uploads planned with the `ingest` settings (a long one
/// split into chunks); job objects a previous run left without a job, or of
/// jobs done, are deleted first.
pub async fn take_workers(
    parts: OriginParts,
    library: &StoreConfig,
    workspace_root: &Path,
    queue: &QueueSettings,
    ingest: &kinema_media::IngestConfig,
) -> Result<OriginParts> {
    let objects = kinema_store::open_job_objects(library)
        .await
        .with_context(|| format!("cannot open library {}", library.library))?
        .context("the library is not in an object store")?;
    // PostgreSQL when [queue] names one, else embedded in the workspace.
    let queue = crate::queue::open(queue, &workspace_root.join("worker-queue")).await?;
    // Long uploads are planned here as chunks for many workers at once,
    // from a copy kept while they arrive; what a crash left of one goes.
    let planning = workspace_root.join("planning");
    match std::fs::remove_dir_all(&planning) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(dir = %planning.display(), %error,
            "cannot remove copies of uploads a previous run left"),
    }
    let chunking = Chunking {
        config: ingest.clone(),
        scratch: planning,
    };
    let uploads = RemoteIngest::new(queue.clone(), objects, parts.store()).with_chunking(chunking);
    uploads.clean_debris().await;
    let location = JobObjectsLocation {
        library: library.library.clone(),
    };
    tracing::info!(library = %library.library, "uploads go to the object store for `kinema worker` processes");
    Ok(parts.with_workers(WorkerApi::new(queue, Some(location)).with_uploads(uploads)))
}
