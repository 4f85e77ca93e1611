//! The admin API under `/api/`: videos and ingest jobs, JSON over HTTP.
//!
//! ```text
//! GET    /api/videos                 published videos (reads)
//! GET    /api/videos/{id}            one video's manifest and URLs
//! POST   /api/videos[?id=&title=&access=]    upload (raw body or multipart/form-data) → 202 + job
//! PATCH  /api/videos/{id}            edit title, description (edit.rs), access
//!                                    (a new generation: policy.rs) → the video
//! DELETE /api/videos/{id}            unpublish atomically → 204
//! GET    /api/jobs                   ingest jobs, newest first
//! GET    /api/jobs/{id}              state, progress, error, ffmpeg log tail
//! POST   /api/jobs/{id}/cancel       → the job
//! POST   /api/jobs/{id}/retry        → the job
//! ```
//!
//! An upload without an id is named after its title, or its file's name
//! (a slug, [`kinema_media::slug`], numbered when taken).
//!
//! A multipart upload may carry subtitle files beside the video, as parts
//! named `subtitles:LANG` (`subtitles:fr`, `subtitles:fr+forced`,
//! `subtitles:en+sdh`; SubRip, ASS/SSA or WebVTT, at most 32 of 16 MiB
//! each), published as WebVTT renditions like `kinema ingest --subtitles`.
//!
//! GET requests only read; POST and DELETE change the library, so an
//! authorisation layer in front of `/api/` can tell them apart by method.
//! Uploads are streamed to a file in the job store as they arrive (never
//! held in memory) and capped at [`MAX_UPLOAD_BYTES`]; an upload that does
//! not fit on the library's disk is removed and refused with 507
//! Insufficient Storage (RFC 4918 §11.5), as is a job that cannot be
//! recorded. Every error is `{"error": "..."}` with a status saying whose
//! fault it was. The ingest itself is `kinema_media`'s; this module is only
//! its HTTP face.

use std::sync::Arc;

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use kinema_core::{AccessPolicy, Manifest, VideoId};
use kinema_http::{ConnectionInfo, RequestBody, ResponseBody, respond};
use kinema_media::slug;
use kinema_media::subtitles::{MAX_SIDECAR_BYTES, SidecarSubtitle};
use kinema_media::{
    IngestConfig, IngestService, JobError, JobId, MediaError, SubmitRequest, Workspace,
};
use kinema_store::{Store, VideoMetadata};
use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::upload_form::{
    MAX_SUBTITLE_PARTS, UploadError, check_upload_fields, discard_upload, parse_query,
    read_text_field, stream_to_file,
};

/// Largest upload accepted, bytes.
pub const MAX_UPLOAD_BYTES: u64 = 8 * 1024 * 1024 * 1024;

pub(crate) type HttpResponse = http::Response<ResponseBody>;

#[derive(Debug)]
pub struct Api {
    store: Arc<dyn Store>,
    /// Told when a policy change republished a video, so the next request
    /// serves the new generation.
    catalog: Catalog,
    ingest: IngestService,
    max_upload_bytes: u64,
    /// With a library in S3: uploads go to the object store for workers,
    /// and the jobs API shows their jobs too.
    remote: Option<crate::remote_ingest::RemoteIngest>,
}

impl Api {
    /// Starts the ingest job service of the library (recovering jobs a
    /// previous process left running), its state in `workspace`.
    pub(crate) async fn new(
        store: Arc<dyn Store>,
        catalog: Catalog,
        workspace: Workspace,
        config: IngestConfig,
    ) -> Result<Self, JobError> {
        let ingest = IngestService::start(store.clone(), workspace, config).await?;
        Ok(Self {
            store,
            catalog,
            ingest,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            remote: None,
        })
    }

    /// Sends uploads to the object store for workers ([`crate::remote_ingest`]).
    pub(crate) fn with_remote(
        mut self,
        remote: Option<crate::remote_ingest::RemoteIngest>,
    ) -> Self {
        self.remote = remote;
        self
    }

    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
        _connection: ConnectionInfo,
    ) -> HttpResponse {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path
            .trim_start_matches("/api")
            .trim_matches('/')
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        // HEAD is GET without the body (RFC 9110 §9.3.2), which the
        // connection layer drops.
        let method = match request.method() {
            &Method::HEAD => Method::GET,
            method => method.clone(),
        };
        let request = match &self.remote {
            Some(remote) => {
                let answered = remote
                    .answer(
                        &self.ingest,
                        &segments,
                        &method,
                        request,
                        self.max_upload_bytes,
                    )
                    .await;
                match answered {
                    Ok(response) => return response,
                    Err(request) => request,
                }
            }
            None => request,
        };
        match (segments.as_slice(), &method) {
            (["videos"], &Method::GET) => self.list_videos().await,
            (["videos"], &Method::POST) => self.upload(request).await,
            (["videos"], _) => method_not_allowed("GET, POST"),
            (["videos", id], &Method::GET) => self.video(id).await,
            (["videos", id], &Method::DELETE) => self.delete_video(id).await,
            (["videos", id], &Method::PATCH) => match parse_video_id(id) {
                Ok(id) => {
                    let body = request.into_body();
                    crate::edit::patch_video(self.store.as_ref(), &self.catalog, id, body).await
                }
                Err(response) => *response,
            },
            (["videos", _], _) => method_not_allowed("GET, PATCH, DELETE"),
            (["jobs"], &Method::GET) => {
                json_response(StatusCode::OK, json!({ "jobs": self.ingest.jobs() }))
            }
            (["jobs"], _) => method_not_allowed("GET"),
            (["jobs", id], &Method::GET) => match parse_job_id(id) {
                Ok(id) => job_result(self.ingest.job(&id).await, StatusCode::OK),
                Err(response) => *response,
            },
            (["jobs", _], _) => method_not_allowed("GET"),
            (["jobs", id, "cancel"], &Method::POST) => match parse_job_id(id) {
                Ok(id) => job_result(self.ingest.cancel(&id).await, StatusCode::OK),
                Err(response) => *response,
            },
            (["jobs", id, "retry"], &Method::POST) => match parse_job_id(id) {
                Ok(id) => job_result(self.ingest.retry(&id).await, StatusCode::ACCEPTED),
                Err(response) => *response,
            },
            (["jobs", _, "cancel" | "retry"], _) => method_not_allowed("POST"),
            _ => error(
                StatusCode::NOT_FOUND,
                format!("no api endpoint {method} {path}"),
            ),
        }
    }

    async fn list_videos(&self) -> HttpResponse {
        let ids = match self.store.list_videos().await {
            Ok(ids) => ids,
            Err(error) => return internal(error),
        };
        let mut videos = Vec::new();
        for id in ids {
            // A video unpublished between listing and reading is skipped.
            if let Ok((manifest, metadata)) = crate::edit::read_both(self.store.as_ref(), &id).await
            {
                videos.push(video_summary(&manifest, &metadata));
            }
        }
        json_response(StatusCode::OK, json!({ "videos": videos }))
    }

    async fn video(&self, id: &str) -> HttpResponse {
        let id = match parse_video_id(id) {
            Ok(id) => id,
            Err(response) => return *response,
        };
        match crate::edit::read_both(self.store.as_ref(), &id).await {
            Ok((manifest, metadata)) => {
                let mut value = video_summary(&manifest, &metadata);
                value["manifest"] = serde_json::to_value(&manifest).unwrap_or(Value::Null);
                json_response(StatusCode::OK, value)
            }
            Err(error) if error.is_not_found() => {
                error_response(StatusCode::NOT_FOUND, format!("video {id} does not exist"))
            }
            Err(error) => internal(error),
        }
    }

    async fn delete_video(&self, id: &str) -> HttpResponse {
        let id = match parse_video_id(id) {
            Ok(id) => id,
            Err(response) => return *response,
        };
        match self.store.unpublish(&id).await {
            Ok(()) => {
                let mut response = http::Response::new(ResponseBody::Empty);
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            Err(error) if error.is_not_found() => {
                error_response(StatusCode::NOT_FOUND, format!("video {id} does not exist"))
            }
            Err(error) => internal(error),
        }
    }

    async fn upload(&self, request: http::Request<RequestBody>) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let query = parse_query(parts.uri.query().unwrap_or(""));
        let mut id = query
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.clone());
        let mut title = query
            .iter()
            .find(|(k, _)| k == "title")
            .map(|(_, v)| v.clone());
        let mut access = query
            .iter()
            .find(|(k, _)| k == "access")
            .map(|(_, v)| v.clone());
        let mut description = query
            .iter()
            .find(|(k, _)| k == "description")
            .map(|(_, v)| v.clone());
        // Query parameters are checked before the body is read, also when
        // form parts later replace them.
        if let Err(message) = check_upload_fields(&id, &title, &access, &description) {
            return error_response(StatusCode::BAD_REQUEST, message);
        }
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > self.max_upload_bytes) {
            return too_large(self.max_upload_bytes);
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (path, file) = match self.ingest.create_upload_file().await {
            Ok(created) => created,
            Err(error) if error.is_storage_full() => return job_error(error),
            Err(error) => return internal(error),
        };
        // Sidecar subtitle files (`subtitles:LANG` parts), each an upload
        // of its own, removed with the video's on any refusal.
        let mut subtitles: Vec<SidecarSubtitle> = Vec::new();
        // The file part's name: the title when the form gives none.
        let mut file_name = None;
        let received = if content_type
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
        {
            let boundary = match multer::parse_boundary(&content_type) {
                Ok(boundary) => boundary,
                Err(error) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        format!("multipart/form-data without a usable boundary: {error}"),
                    );
                }
            };
            self.receive_multipart(
                body,
                boundary,
                file,
                &mut id,
                &mut title,
                &mut access,
                &mut description,
                &mut subtitles,
                &mut file_name,
            )
            .await
        } else {
            stream_to_file(body, file, self.max_upload_bytes)
                .await
                .map(|size| (size, true))
        };
        let size = match received {
            Ok((size, true)) => size,
            Ok((_, false)) => {
                discard_upload(&path, &subtitles).await;
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "the multipart upload has no file part; send the video as a part named \"file\"",
                );
            }
            Err(upload_error) => {
                discard_upload(&path, &subtitles).await;
                if let UploadError::Io(error) = &upload_error {
                    tracing::error!(path = %path.display(), %error, "upload could not be stored; removed");
                }
                return upload_error.into_response(self.max_upload_bytes);
            }
        };
        if size == 0 {
            discard_upload(&path, &subtitles).await;
            return error_response(
                StatusCode::BAD_REQUEST,
                "the upload is empty (0 bytes); send the video file as the request body",
            );
        }
        let video_id = match id.filter(|id| !id.is_empty()) {
            Some(id) => match VideoId::new(id) {
                Ok(id) => Some(id),
                Err(error) => {
                    discard_upload(&path, &subtitles).await;
                    return error_response(StatusCode::BAD_REQUEST, format!("id: {error}"));
                }
            },
            None => None,
        };
        let access = match access
            .as_deref()
            .unwrap_or("public")
            .parse::<AccessPolicy>()
        {
            Ok(access) => access,
            Err(error) => {
                discard_upload(&path, &subtitles).await;
                return error_response(StatusCode::BAD_REQUEST, format!("access: {error}"));
            }
        };
        if let Err(message) = check_upload_fields(&None, &title, &None, &None) {
            discard_upload(&path, &subtitles).await;
            return error_response(StatusCode::BAD_REQUEST, message);
        }
        let description = description.filter(|text| !text.is_empty());
        if let Some(Err(message)) = description
            .as_deref()
            .map(kinema_store::metadata::check_description)
        {
            discard_upload(&path, &subtitles).await;
            return error_response(StatusCode::BAD_REQUEST, format!("description: {message}"));
        }
        // Without an explicit id the video is named after its title (a
        // slug, kinema_media::slug), so the title falls back to the file's name.
        let title = title
            .filter(|title| !title.is_empty())
            .or_else(|| file_name.as_deref().and_then(slug::title_from_file_name));
        let submitted = self
            .ingest
            .submit(SubmitRequest {
                source: path,
                owned_source: true,
                video_id,
                title,
                access,
                subtitles,
            })
            .await;
        match submitted {
            Ok(job) => {
                if let Some(description) = description {
                    crate::edit::describe_when_published(
                        self.store.clone(),
                        self.ingest.clone(),
                        job.id.clone(),
                        description,
                    );
                }
                let location = format!("/api/jobs/{}", job.id);
                let mut response = json_response(
                    StatusCode::ACCEPTED,
                    json!({ "job": job, "location": location }),
                );
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            Err(error) => job_error(error),
        }
    }

    /// Reads a multipart body: text parts `id` and `title`, parts named
    /// `subtitles:LANG[+forced][+sdh]` (sidecar subtitle files, each streamed
    /// to an upload file of its own, added to `subtitles` before it is
    /// read so a failure removes it too), and the first other part with a
    /// file name (or named `file`) streamed to `file`, its name in `file_name`.
    /// Returns the file's size and whether a file part was present.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one form, each an output"
    )]
    async fn receive_multipart(
        &self,
        body: RequestBody,
        boundary: String,
        file: tokio::fs::File,
        id: &mut Option<String>,
        title: &mut Option<String>,
        access: &mut Option<String>,
        description: &mut Option<String>,
        subtitles: &mut Vec<SidecarSubtitle>,
        file_name: &mut Option<String>,
    ) -> Result<(u64, bool), UploadError> {
        let mut multipart = multer::Multipart::new(body, boundary);
        let mut file = Some(file);
        let mut size = 0;
        let mut found = false;
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(error) => return Err(UploadError::Malformed(error.to_string())),
            };
            let name = field.name().unwrap_or("").to_string();
            let is_file = field.file_name().is_some() || name == "file";
            if let Some(spec) = name.strip_prefix("subtitles:") {
                if subtitles.len() >= MAX_SUBTITLE_PARTS {
                    return Err(UploadError::Malformed(format!(
                        "more than {MAX_SUBTITLE_PARTS} subtitles parts; send at most \
                         {MAX_SUBTITLE_PARTS} subtitle files"
                    )));
                }
                let sidecar =
                    SidecarSubtitle::parse(&format!("{spec}=upload")).map_err(|error| {
                        UploadError::Malformed(format!(
                            "the part \"{name}\" must be named subtitles:LANG (subtitles:fr, with \
                         +forced or +sdh after the language): {error}"
                        ))
                    })?;
                let (path, sidecar_file) =
                    self.ingest.create_upload_file().await.map_err(|error| {
                        if error.is_storage_full() {
                            UploadError::Io(std::io::ErrorKind::StorageFull.into())
                        } else {
                            UploadError::Io(std::io::Error::other(error.to_string()))
                        }
                    })?;
                subtitles.push(SidecarSubtitle { path, ..sidecar });
                stream_to_file(
                    field.map(|chunk| chunk.map_err(std::io::Error::other)),
                    sidecar_file,
                    MAX_SIDECAR_BYTES,
                )
                .await
                .map_err(|error| match error {
                    UploadError::TooLarge => UploadError::Malformed(format!(
                        "the part \"{name}\" is larger than the limit of {} MiB for a subtitle file",
                        MAX_SIDECAR_BYTES / (1024 * 1024)
                    )),
                    other => other,
                })?;
            } else if is_file && let Some(file) = file.take() {
                *file_name = field.file_name().map(str::to_string);
                size = stream_to_file(
                    field.map(|chunk| chunk.map_err(std::io::Error::other)),
                    file,
                    self.max_upload_bytes,
                )
                .await?;
                found = true;
            } else if matches!(name.as_str(), "id" | "title" | "access" | "description") {
                let text = read_text_field(field, &name).await?;
                let value = Some(text.trim().to_string());
                match name.as_str() {
                    "id" => *id = value,
                    "title" => *title = value,
                    "description" => *description = value,
                    _ => *access = value,
                }
            }
        }
        Ok((size, found))
    }
}

/// What the library lists of a video, with its public URLs (every one
/// resolves: the media of the current generation).
fn video_summary(manifest: &Manifest, metadata: &VideoMetadata) -> Value {
    let id = &manifest.id;
    let has = |path: &str| manifest.files.iter().any(|file| file.path.as_str() == path);
    json!({
        "id": id,
        "title": metadata.title(manifest),
        "description": metadata.description,
        "duration_seconds": manifest.duration_seconds,
        "published_at_unix": manifest.published_at_unix,
        "access": manifest.access,
        "renditions": manifest.renditions,
        "urls": {
            "hls": format!("/v/{id}/master.m3u8"),
            "dash": format!("/v/{id}/manifest.mpd"),
            "poster": has("thumbs/poster.jpg").then(|| format!("/v/{id}/thumbs/poster.jpg")),
            "thumbnails": has("thumbs/thumbs.vtt").then(|| format!("/v/{id}/thumbs/thumbs.vtt")),
        },
    })
}

fn parse_video_id(text: &str) -> Result<VideoId, Box<HttpResponse>> {
    VideoId::new(text)
        .map_err(|error| Box::new(error_response(StatusCode::BAD_REQUEST, error.to_string())))
}

fn parse_job_id(text: &str) -> Result<JobId, Box<HttpResponse>> {
    JobId::parse(text).ok_or_else(|| {
        Box::new(error_response(
            StatusCode::NOT_FOUND,
            format!("job {text} does not exist"),
        ))
    })
}

fn job_result(result: Result<kinema_media::JobView, JobError>, status: StatusCode) -> HttpResponse {
    match result {
        Ok(job) => json_response(status, json!({ "job": job })),
        Err(error) => job_error(error),
    }
}

fn job_error(error: JobError) -> HttpResponse {
    let status = match &error {
        JobError::NotFound(_) => StatusCode::NOT_FOUND,
        JobError::WrongState { .. } | JobError::VideoIdTaken(_) => StatusCode::CONFLICT,
        JobError::SourceGone(_) => StatusCode::GONE,
        JobError::Media(MediaError::ToolMissing { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        JobError::Media(error) if error.is_bad_source() => StatusCode::UNPROCESSABLE_ENTITY,
        // RFC 4918 §11.5: the server cannot store what the request needs.
        error if error.is_storage_full() => {
            tracing::error!(%error, "ingest api failure: the library's disk is full");
            StatusCode::INSUFFICIENT_STORAGE
        }
        JobError::StorageFull { .. } | JobError::Media(_) | JobError::Io { .. } => {
            tracing::error!(%error, "ingest api failure");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error_response(status, error.to_string())
}

fn internal(error: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(%error, "api request failed");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

pub(crate) fn too_large(limit: u64) -> HttpResponse {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is larger than the limit of {limit} bytes"),
    )
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn error(status: StatusCode, message: String) -> HttpResponse {
    error_response(status, message)
}

pub(crate) fn error_response(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    json_response(status, json!({ "error": message.into() }))
}

fn json_response(status: StatusCode, value: Value) -> HttpResponse {
    respond::json(status, &value, HeaderMap::new())
}
