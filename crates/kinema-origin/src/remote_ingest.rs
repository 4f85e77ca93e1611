//! Uploads for workers: with a library in S3, `POST /api/videos` streams
//! the upload straight to the object store, to `jobs/{job}/source` (outside
//! the published `videos/`), and enqueues one `encode` task that a
//! `kinema worker` on any machine claims (see [`crate::worker_api`]); this
//! server encodes nothing itself.
//!
//! No debris: an upload refused or cut short is removed (a multipart upload
//! is aborted); a source whose job is done is deleted; and at start,
//! sources with no job (the server stopped between the upload and the
//! enqueue) and of jobs done are deleted ([`RemoteIngest::clean_debris`]).
//!
//! The jobs API shows these jobs beside the local ones, in the same shape
//! (`id`, `video_id`, `title`, `state`, `progress` with `stage` and
//! `percent`, `attempts`, times, `error`), so the web UI's progress, cancel
//! and retry work the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use kinema_core::{AccessPolicy, VideoId};
use kinema_http::{RequestBody, respond};
use kinema_media::slug;
use kinema_queue::{JobState, NewJob, Queue, QueueError, TaskSpec};
use kinema_store::Store;
use kinema_store::s3::JobObjects;
use serde_json::{Value, json};

mod chunking;
mod jobs_api;

pub use chunking::Chunking;
pub(crate) use jobs_api::job_view;

use crate::api::{HttpResponse, error_response};
use crate::upload_form::{UploadError, check_upload_fields, read_text_field};

/// The name of a job's source below its prefix.
pub const SOURCE: &str = "source";
/// The kind of a whole-video encode task.
pub const ENCODE: &str = "encode";

/// Enqueues uploads for workers and shows their jobs.
#[derive(Debug, Clone)]
pub struct RemoteIngest {
    queue: Arc<dyn Queue>,
    objects: JobObjects,
    store: Arc<dyn Store>,
    /// `None`: every upload is one `encode` task.
    chunking: Option<Chunking>,
}

/// An upload's fields, from the query and the form.
#[derive(Debug, Default)]
pub(crate) struct UploadFields {
    pub id: Option<String>,
    pub title: Option<String>,
    pub access: Option<String>,
    pub description: Option<String>,
}

fn json_ok(status: StatusCode, value: Value) -> HttpResponse {
    respond::json(status, &value, HeaderMap::new())
}

fn generate_job_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("j{nanos:x}{:x}{count:x}", std::process::id())
}

fn queue_refusal(error: QueueError) -> HttpResponse {
    let status = match &error {
        QueueError::NotFound(_) => StatusCode::NOT_FOUND,
        QueueError::WrongState { .. } | QueueError::AlreadyExists(_) => StatusCode::CONFLICT,
        QueueError::Invalid { .. } => StatusCode::BAD_REQUEST,
        _ => {
            tracing::error!(%error, "job queue failure");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the job queue is unavailable; try again",
            );
        }
    };
    error_response(status, error.to_string())
}

impl RemoteIngest {
    pub fn new(queue: Arc<dyn Queue>, objects: JobObjects, store: Arc<dyn Store>) -> Self {
        Self {
            queue,
            objects,
            store,
            chunking: None,
        }
    }

    /// Splits long uploads into chunk tasks ([`Chunking`]).
    pub fn with_chunking(mut self, chunking: Chunking) -> Self {
        self.chunking = Some(chunking);
        self
    }

    /// Deletes job objects no job needs any more: those of jobs done, and
    /// those with no job at all (a server stopped between an upload and its
    /// enqueue). Run at start.
    pub async fn clean_debris(&self) {
        let jobs = match self.objects.jobs().await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(%error, "cannot list job objects; debris stays until the next start");
                return;
            }
        };
        for job in jobs {
            let debris = match self.queue.job(&job).await {
                Err(QueueError::NotFound(_)) => true,
                Ok(status) => status.state == JobState::Done,
                Err(error) => {
                    tracing::warn!(%job, %error, "cannot read a job; its objects stay");
                    false
                }
            };
            if debris {
                match self.objects.delete_job(&job).await {
                    Ok(()) => {
                        tracing::info!(%job, "deleted the objects of a job that needs them no more")
                    }
                    Err(error) => tracing::warn!(%job, %error, "cannot delete a job's objects"),
                }
            }
        }
    }

    /// The job objects, for the worker protocol's clean-up of done jobs.
    pub fn objects(&self) -> &JobObjects {
        &self.objects
    }

    /// Receives an upload (a raw body or a multipart form) into
    /// `jobs/{job}/source` and enqueues its encode; 202 with the job.
    pub(crate) async fn upload(
        &self,
        body: RequestBody,
        content_type: &str,
        fields: UploadFields,
        max_bytes: u64,
    ) -> HttpResponse {
        let job_id = generate_job_id();
        let mut file_name = None;
        let copy = match &self.chunking {
            Some(chunking) => match chunking.create_copy(&job_id).await {
                Ok(copy) => Some(copy),
                Err(error) => {
                    tracing::error!(%error, "cannot keep a copy of an upload to plan it");
                    return error_response(
                        StatusCode::INSUFFICIENT_STORAGE,
                        "the server cannot keep the upload to plan it; see the server log",
                    );
                }
            },
            None => None,
        };
        let copy_file = copy.as_ref().map(|(_, file)| file.clone());
        let copy_path = copy.map(|(path, _)| path);
        let response = self
            .receive_and_enqueue(
                body,
                content_type,
                fields,
                max_bytes,
                &job_id,
                copy_file,
                copy_path.as_deref(),
                &mut file_name,
            )
            .await;
        if let Some(path) = copy_path {
            let _ = tokio::fs::remove_file(&path).await;
        }
        response
    }

    #[allow(clippy::too_many_arguments, reason = "one upload's parts, each needed")]
    async fn receive_and_enqueue(
        &self,
        body: RequestBody,
        content_type: &str,
        mut fields: UploadFields,
        max_bytes: u64,
        job_id: &str,
        copy: Option<chunking::Copy>,
        copy_path: Option<&std::path::Path>,
        file_name: &mut Option<String>,
    ) -> HttpResponse {
        let job_id = job_id.to_string();
        let received = if content_type
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
        {
            match multer::parse_boundary(content_type) {
                Ok(boundary) => {
                    self.receive_multipart(
                        body,
                        boundary,
                        &job_id,
                        &mut fields,
                        file_name,
                        max_bytes,
                        copy,
                    )
                    .await
                }
                Err(error) => Err(UploadError::Malformed(format!(
                    "multipart/form-data without a usable boundary: {error}"
                ))),
            }
        } else {
            self.receive(&job_id, body, max_bytes, copy).await.map(Some)
        };
        let refusal = match received {
            Ok(Some(size)) if size > 0 => None,
            Ok(Some(_)) => Some(error_response(
                StatusCode::BAD_REQUEST,
                "the upload is empty (0 bytes); send the video file as the request body",
            )),
            Ok(None) => Some(error_response(
                StatusCode::BAD_REQUEST,
                "the multipart upload has no file part; send the video as a part named \"file\"",
            )),
            Err(refused) => Some(refused.into_response(max_bytes)),
        };
        if let Some(refusal) = refusal {
            self.discard(&job_id).await;
            return refusal;
        }
        let planned = match (&self.chunking, copy_path) {
            (Some(chunking), Some(path)) => chunking.plan(&job_id, path).await,
            _ => Ok((vec![encode_task()], None)),
        };
        let (tasks, plan) = match planned {
            Ok(planned) => planned,
            Err(refusal) => {
                self.discard(&job_id).await;
                return refusal;
            }
        };
        match self
            .enqueue(&job_id, fields, file_name.take(), tasks, plan)
            .await
        {
            Ok(job) => {
                let location = format!("/api/jobs/{job_id}");
                let mut response = json_ok(
                    StatusCode::ACCEPTED,
                    json!({ "job": job, "location": location }),
                );
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            Err(refusal) => {
                self.discard(&job_id).await;
                refusal
            }
        }
    }

    async fn discard(&self, job_id: &str) {
        if let Err(error) = self.objects.delete_job(job_id).await {
            tracing::warn!(job = %job_id, %error, "cannot delete a refused upload; it is removed at the next start");
        }
    }

    async fn receive(
        &self,
        job_id: &str,
        body: RequestBody,
        max_bytes: u64,
        copy: Option<chunking::Copy>,
    ) -> Result<u64, UploadError> {
        self.objects
            .put_stream(job_id, SOURCE, chunking::tee(body, copy), max_bytes)
            .await
            .map_err(store_refusal)
    }

    /// Reads a multipart body: text parts `id`, `title`, `access`,
    /// `description`, and the first part with a file name (or named
    /// `file`) streamed to the object store. `None` without a file part.
    #[allow(
        clippy::too_many_arguments,
        reason = "one upload's parts, each an input or an output"
    )]
    async fn receive_multipart(
        &self,
        body: RequestBody,
        boundary: String,
        job_id: &str,
        fields: &mut UploadFields,
        file_name: &mut Option<String>,
        max_bytes: u64,
        copy: Option<chunking::Copy>,
    ) -> Result<Option<u64>, UploadError> {
        let mut multipart = multer::Multipart::new(body, boundary);
        let mut size = None;
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(error) => return Err(UploadError::Malformed(error.to_string())),
            };
            let name = field.name().unwrap_or("").to_string();
            let is_file = field.file_name().is_some() || name == "file";
            if name.starts_with("subtitles:") {
                return Err(UploadError::Malformed(
                    "subtitle parts are not taken with a library in S3 yet; upload the video \
                     alone, or ingest it with `kinema ingest --subtitles`"
                        .into(),
                ));
            } else if is_file && size.is_none() {
                *file_name = field.file_name().map(str::to_string);
                let stream = field.map(|chunk| chunk.map_err(std::io::Error::other));
                let stream = chunking::tee(stream, copy.clone());
                size = Some(
                    self.objects
                        .put_stream(job_id, SOURCE, stream, max_bytes)
                        .await
                        .map_err(store_refusal)?,
                );
            } else if matches!(name.as_str(), "id" | "title" | "access" | "description") {
                let value = Some(read_text_field(field, &name).await?.trim().to_string());
                match name.as_str() {
                    "id" => fields.id = value,
                    "title" => fields.title = value,
                    "description" => fields.description = value,
                    _ => fields.access = value,
                }
            }
        }
        Ok(size)
    }

    async fn enqueue(
        &self,
        job_id: &str,
        fields: UploadFields,
        file_name: Option<String>,
        tasks: Vec<TaskSpec>,
        plan: Option<Value>,
    ) -> Result<Value, HttpResponse> {
        let bad = |message: String| error_response(StatusCode::BAD_REQUEST, message);
        check_upload_fields(
            &fields.id,
            &fields.title,
            &fields.access,
            &fields.description,
        )
        .map_err(bad)?;
        let access = fields
            .access
            .as_deref()
            .filter(|access| !access.is_empty())
            .unwrap_or("public")
            .parse::<AccessPolicy>()
            .map_err(|error| bad(format!("access: {error}")))?;
        let title = fields
            .title
            .filter(|title| !title.is_empty())
            .or_else(|| file_name.as_deref().and_then(slug::title_from_file_name));
        if let Some(title) = &title {
            kinema_media::config::check_title(title).map_err(|error| {
                error_response(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            })?;
        }
        let active = self.active_video_ids().await?;
        let video_id = match fields.id.filter(|id| !id.is_empty()) {
            Some(id) => {
                let id = VideoId::new(id).map_err(|error| bad(format!("id: {error}")))?;
                if active.contains(&id.to_string()) || self.is_published(&id).await? {
                    return Err(error_response(
                        StatusCode::CONFLICT,
                        format!(
                            "video {id} already exists or is being ingested; choose another id"
                        ),
                    ));
                }
                id
            }
            None => self.free_slug(title.as_deref(), job_id, &active).await?,
        };
        let title = title.unwrap_or_else(|| video_id.to_string());
        let mut settings = json!({
            "video_id": video_id,
            "title": title,
            "access": access,
            "description": fields.description.filter(|text| !text.is_empty()),
        });
        if let Some(plan) = plan {
            settings["plan"] = plan;
        }
        let job = NewJob {
            id: job_id.to_string(),
            source_key: format!("{}/{job_id}/{SOURCE}", kinema_store::s3::JOBS),
            settings,
            tasks,
        };
        let status = self.queue.enqueue(job).await.map_err(queue_refusal)?;
        tracing::info!(job = %job_id, video = %video_id, "upload stored in the object store; queued for workers");
        Ok(job_view(&status))
    }

    async fn is_published(&self, id: &VideoId) -> Result<bool, HttpResponse> {
        match self.store.manifest(id).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => {
                tracing::error!(%error, "cannot read the library");
                Err(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the library cannot be read; try again",
                ))
            }
        }
    }

    /// Video ids of queued and running jobs.
    async fn active_video_ids(&self) -> Result<Vec<String>, HttpResponse> {
        let jobs = self
            .queue
            .jobs(kinema_queue::MAX_LIST)
            .await
            .map_err(queue_refusal)?;
        Ok(jobs
            .iter()
            .filter(|job| job.state.is_active())
            .filter_map(|job| job.settings["video_id"].as_str().map(str::to_string))
            .collect())
    }

    async fn free_slug(
        &self,
        title: Option<&str>,
        job_id: &str,
        active: &[String],
    ) -> Result<VideoId, HttpResponse> {
        for candidate in slug::candidates(title.unwrap_or("")) {
            let Ok(candidate) = VideoId::new(candidate) else {
                continue;
            };
            if !active.contains(&candidate.to_string()) && !self.is_published(&candidate).await? {
                return Ok(candidate);
            }
        }
        VideoId::new(format!("v{}", &job_id[1..]))
            .map_err(|error| error_response(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
    }
}

/// The one task of a job encoded whole.
fn encode_task() -> TaskSpec {
    TaskSpec {
        name: ENCODE.into(),
        kind: ENCODE.into(),
        payload: json!({}),
        depends_on: Vec::new(),
        weight_seconds: 1.0,
    }
}

fn store_refusal(error: kinema_store::StoreError) -> UploadError {
    match error {
        kinema_store::StoreError::TooLarge { .. } => UploadError::TooLarge,
        kinema_store::StoreError::Io { source, .. } => UploadError::Malformed(source.to_string()),
        error => {
            tracing::error!(%error, "an upload could not be stored in the object store");
            UploadError::Io(std::io::Error::other(error.to_string()))
        }
    }
}
