//! The jobs API's view of the jobs for workers: uploads routed here, the
//! listing of local jobs and these together, and one job, its cancel and
//! retry, in the shape of the local jobs (`kinema_media::JobView`).

use http::{Method, StatusCode, header};
use kinema_http::RequestBody;
use kinema_queue::{JobState, JobStatus, QueueError};
use serde_json::{Value, json};

use super::{RemoteIngest, SOURCE, UploadFields, json_ok, queue_refusal};
use crate::api::{HttpResponse, error_response, too_large};
use crate::upload_form::{check_upload_fields, parse_query};

impl RemoteIngest {
    /// Answers what the jobs API asks of these jobs: uploads, the listing
    /// (local jobs and these, newest first), and one job, its cancel and
    /// retry when the queue holds it. Hands the request back for the rest.
    pub(crate) async fn answer(
        &self,
        local: &kinema_media::IngestService,
        segments: &[&str],
        method: &Method,
        request: http::Request<RequestBody>,
        max_bytes: u64,
    ) -> Result<HttpResponse, http::Request<RequestBody>> {
        match (segments, method) {
            (["videos"], &Method::POST) => {
                let (parts, body) = request.into_parts();
                let query = parse_query(parts.uri.query().unwrap_or(""));
                let get = |key: &str| {
                    query
                        .iter()
                        .find(|(name, _)| name == key)
                        .map(|(_, value)| value.clone())
                };
                let fields = UploadFields {
                    id: get("id"),
                    title: get("title"),
                    access: get("access"),
                    description: get("description"),
                };
                // Checked before the body is read, also when form parts
                // later replace them.
                if let Err(message) = check_upload_fields(
                    &fields.id,
                    &fields.title,
                    &fields.access,
                    &fields.description,
                ) {
                    return Ok(error_response(StatusCode::BAD_REQUEST, message));
                }
                let declared = parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<u64>().ok());
                if declared.is_some_and(|length| length > max_bytes) {
                    return Ok(too_large(max_bytes));
                }
                let content_type = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                Ok(self.upload(body, &content_type, fields, max_bytes).await)
            }
            (["jobs"], &Method::GET) => {
                let mut jobs: Vec<Value> = local
                    .jobs()
                    .iter()
                    .filter_map(|job| serde_json::to_value(job).ok())
                    .collect();
                match self.jobs().await {
                    Ok(remote) => jobs.extend(remote),
                    Err(refusal) => return Ok(refusal),
                }
                jobs.sort_by_key(|job| std::cmp::Reverse(job["created_at_unix"].as_u64()));
                Ok(json_ok(StatusCode::OK, json!({ "jobs": jobs })))
            }
            (["jobs", id], &Method::GET) => match self.job(id).await {
                Ok(Some(job)) => Ok(json_ok(StatusCode::OK, json!({ "job": job }))),
                Ok(None) => Err(request),
                Err(refusal) => Ok(refusal),
            },
            (["jobs", id, action @ ("cancel" | "retry")], &Method::POST) => {
                match self.job(id).await {
                    Ok(Some(_)) if *action == "cancel" => Ok(self.cancel(id).await),
                    Ok(Some(_)) => Ok(self.retry(id).await),
                    Ok(None) => Err(request),
                    Err(refusal) => Ok(refusal),
                }
            }
            _ => Err(request),
        }
    }

    /// Every job, newest first, as the jobs API shows them.
    pub(crate) async fn jobs(&self) -> Result<Vec<Value>, HttpResponse> {
        let jobs = self
            .queue
            .jobs(kinema_queue::MAX_LIST)
            .await
            .map_err(queue_refusal)?;
        Ok(jobs.iter().map(job_view).collect())
    }

    /// One job; `None` when the queue has no such job.
    pub(crate) async fn job(&self, id: &str) -> Result<Option<Value>, HttpResponse> {
        match self.queue.job(id).await {
            Ok(job) => Ok(Some(job_view(&job))),
            Err(QueueError::NotFound(_)) => Ok(None),
            Err(error) => Err(queue_refusal(error)),
        }
    }

    pub(crate) async fn cancel(&self, id: &str) -> HttpResponse {
        match self.queue.cancel(id).await {
            Ok(job) => json_ok(StatusCode::OK, json!({ "job": job_view(&job) })),
            Err(error) => queue_refusal(error),
        }
    }

    pub(crate) async fn retry(&self, id: &str) -> HttpResponse {
        match self.objects.list(id).await {
            Ok(objects) if objects.iter().any(|object| object.name == SOURCE) => {}
            Ok(_) => {
                return error_response(
                    StatusCode::GONE,
                    format!("the source of job {id} is gone; upload it again"),
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot list a job's objects");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the object store cannot be read; try again",
                );
            }
        }
        match self.queue.retry(id).await {
            Ok(job) => json_ok(StatusCode::ACCEPTED, json!({ "job": job_view(&job) })),
            Err(error) => queue_refusal(error),
        }
    }
}

/// A queue job in the shape of the jobs API (`kinema_media::JobView`).
pub(crate) fn job_view(job: &JobStatus) -> Value {
    let stage = match job.state {
        JobState::Queued => "queued",
        JobState::Done => "done",
        _ if job.progress > 0.0 || job.state == JobState::Running => "transcoding",
        _ => "queued",
    };
    let percent = if job.state == JobState::Done {
        100.0
    } else {
        (job.progress * 100.0 * 10.0).round() / 10.0
    };
    let workers: Vec<&str> = job
        .tasks
        .iter()
        .filter_map(|task| task.worker.as_deref())
        .collect();
    let mut view = json!({
        "id": job.id,
        "video_id": job.settings["video_id"],
        "title": job.settings["title"],
        "state": job.state,
        "progress": { "stage": stage, "percent": percent },
        "attempts": job.attempts,
        "created_at_unix": job.created_at_unix,
        "updated_at_unix": job.updated_at_unix,
        "skipped_subtitles": [],
        "workers": workers,
    });
    if let Some(error) = &job.error {
        view["error"] = json!(error);
    }
    view
}
