//! How an upload for workers is split into tasks: a copy of the upload is
//! kept on the server's disk while it streams to the object store, probed
//! (ffprobe, through kinema-media, with the same safety options as every
//! ingest) and planned by [`kinema_media::chunked`]; a source long enough
//! becomes one `chunk` task per time chunk, an `audio` task and an
//! `assemble` task that waits for them all, weighted by media seconds, the
//! plan in the job's settings. A shorter source, or one the planner keeps
//! whole, is one `encode` task. The copy is deleted once planned.
//!
//! A source that is not media is refused here (422), before any worker
//! spends time on it; a probe that cannot run (no ffprobe on the server)
//! leaves the job one `encode` task, which a worker probes itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use kinema_media::IngestConfig;
use kinema_media::chunked::{self, ChunkedPlan};
use kinema_queue::TaskSpec;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::api::{HttpResponse, error_response};

/// The kinds of a chunked job's tasks.
pub const CHUNK: &str = "chunk";
pub const AUDIO: &str = "audio";
pub const ASSEMBLE: &str = "assemble";

/// Splitting uploads into chunk tasks: the ingest settings the workers
/// share (ladder, `[ingest.chunked]`) and where the server keeps an
/// upload's copy while it is planned.
#[derive(Debug, Clone)]
pub struct Chunking {
    pub config: IngestConfig,
    pub scratch: PathBuf,
}

/// The file an upload is copied to while it arrives, shared by the
/// stream that writes it.
pub(super) type Copy = Arc<tokio::sync::Mutex<tokio::fs::File>>;

/// `stream`, every chunk also written to `copy` when there is one.
pub(super) fn tee<S>(
    stream: S,
    copy: Option<Copy>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    stream.then(move |chunk| {
        let copy = copy.clone();
        async move {
            let chunk = chunk?;
            if let Some(copy) = copy {
                copy.lock().await.write_all(&chunk).await?;
            }
            Ok(chunk)
        }
    })
}

impl Chunking {
    /// A new file for the copy of job `job_id`'s upload.
    pub(super) async fn create_copy(&self, job_id: &str) -> std::io::Result<(PathBuf, Copy)> {
        tokio::fs::create_dir_all(&self.scratch).await?;
        let path = self.scratch.join(format!("{job_id}.source"));
        let file = tokio::fs::File::create(&path).await?;
        Ok((path, Arc::new(tokio::sync::Mutex::new(file))))
    }

    /// The tasks of the job whose source was copied to `source`, and the
    /// plan for its settings (`None`: one `encode` task).
    pub(super) async fn plan(
        &self,
        job_id: &str,
        source: &Path,
    ) -> Result<(Vec<TaskSpec>, Option<Value>), HttpResponse> {
        match chunked::probe_and_plan(&self.config, source, &[]).await {
            Ok(plan) if plan.is_chunked() => {
                let value = serde_json::to_value(&plan).map_err(|error| {
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
                })?;
                tracing::info!(job = %job_id, chunks = plan.chunks.len(), "upload planned as chunks");
                Ok((tasks_of(&plan), Some(value)))
            }
            Ok(_) => Ok((vec![super::encode_task()], None)),
            Err(error) if error.is_bad_source() => Err(error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                error.to_string(),
            )),
            Err(error) => {
                tracing::warn!(job = %job_id, %error,
                    "cannot plan the upload here; it is encoded whole by one worker");
                Ok((vec![super::encode_task()], None))
            }
        }
    }
}

/// One `chunk` task per chunk, one `audio`, and `assemble` after them all.
fn tasks_of(plan: &ChunkedPlan) -> Vec<TaskSpec> {
    let mut tasks: Vec<TaskSpec> = (0..plan.chunks.len())
        .map(|index| TaskSpec {
            name: format!("chunk-{index}"),
            kind: CHUNK.into(),
            payload: json!({ "index": index }),
            depends_on: Vec::new(),
            weight_seconds: plan.chunk_media_seconds(index),
        })
        .collect();
    // Audio is cheap beside video; packaging and the upload beside both.
    let duration = plan.source.duration_seconds;
    tasks.push(TaskSpec {
        name: AUDIO.into(),
        kind: AUDIO.into(),
        payload: json!({}),
        depends_on: Vec::new(),
        weight_seconds: duration * 0.1,
    });
    let before: Vec<String> = tasks.iter().map(|task| task.name.clone()).collect();
    tasks.push(TaskSpec {
        name: ASSEMBLE.into(),
        kind: ASSEMBLE.into(),
        payload: json!({}),
        depends_on: before,
        weight_seconds: duration * 0.05,
    });
    tasks
}
